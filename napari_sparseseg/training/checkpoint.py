"""Checkpoints: one ``.safetensors`` file holding the weights plus a JSON metadata header.

Why safetensors: loading never executes pickled code (a checkpoint from a colleague or the web
cannot run anything), and one file carries weights and metadata together.  The metadata records
what the weights mean (classes, background label, network, spacing, normalisation, version) so a
mismatching checkpoint is refused with a message naming both sides instead of producing garbage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_path

FORMAT = "napari-sparseseg-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "sparseseg"


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write weights + metadata atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save_file

    from .. import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **meta}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:  # the package's one temporary-naming scheme (clean-up finds it)
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(full)})
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; any unreadable or foreign file raises :class:`CheckpointError`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors checkpoint ({exc})") from None
    if raw is None:
        raise CheckpointError(f"{path.name} has no napari-sparseseg metadata (not saved by sparseseg?)")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path.name}: corrupt metadata ({type(exc).__name__})") from None
    check_metadata(meta, path.name)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path.name}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
            "the model diverged or the file is damaged"
        )
    return state, meta


#: bounds on the network a checkpoint may ask for: a corrupt or hostile file must not make us build a
#: network of terabytes (every field is checked before anything is allocated)
NETWORK_BOUNDS = {"in_channels": (1, 64), "out_channels": (2, 256), "channel": (1, 512), "levels": (1, 8),
                  "stride": (1, 4), "num_res_units": (0, 8)}


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_metadata(meta: Any, name: str = "checkpoint") -> None:
    """Refuse metadata that is not a sparseseg checkpoint's, or asks for an unreasonable network.

    Every field the loader uses is type- and range-checked here, so a damaged or hand-edited file
    gives one :class:`CheckpointError` line instead of a ``KeyError`` or a huge allocation later.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name}: metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a napari-sparseseg checkpoint (format {meta.get('format')!r})")
    ver = meta.get("format_version")
    if not _int_in(ver, 1, 10**6):
        raise CheckpointError(f"{name}: checkpoint format version {ver!r} is not a positive whole number")
    if ver > FORMAT_VERSION:
        raise CheckpointError(f"{name} uses checkpoint format {ver}; this version reads up to {FORMAT_VERSION}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(_int_in(c, 1, 2**31 - 1) for c in classes):
        raise CheckpointError(f"{name}: metadata field 'classes' must be a non-empty list of class ids > 0")
    if "background_label" in meta and not _int_in(meta["background_label"], 1, 2**31 - 1):
        raise CheckpointError(f"{name}: metadata field 'background_label' must be a whole number > 0")
    net = meta.get("network")
    if not isinstance(net, dict):
        raise CheckpointError(f"{name}: metadata has no 'network' description")
    from ..models.networks import NetworkSpec

    known = set(NetworkSpec.__dataclass_fields__)
    unknown = sorted(set(net) - known)
    if unknown:
        raise CheckpointError(f"{name}: unknown network field(s) {unknown}")
    b = NETWORK_BOUNDS
    if net.get("dims") not in (2, 3):
        raise CheckpointError(f"{name}: network 'dims' must be 2 or 3, got {net.get('dims')!r}")
    for key in ("in_channels", "out_channels"):
        if not _int_in(net.get(key), *b[key]):
            raise CheckpointError(f"{name}: network {key!r} must be a whole number in {list(b[key])}, got {net.get(key)!r}")
    if net["out_channels"] != len(classes) + 1:
        raise CheckpointError(f"{name}: network has {net['out_channels']} outputs for {len(classes)} classes + background")
    chans, strides = net.get("channels", [16, 32, 64, 128]), net.get("strides", [2, 2, 2])
    if (not isinstance(chans, list) or not _int_in(len(chans), 2, b["levels"][1])
            or not all(_int_in(c, *b["channel"]) for c in chans)):
        raise CheckpointError(f"{name}: network 'channels' must be 2-{b['levels'][1]} whole numbers in {list(b['channel'])}")
    if not isinstance(strides, list) or len(strides) != len(chans) - 1 or not all(_int_in(s, *b["stride"]) for s in strides):
        raise CheckpointError(f"{name}: network 'strides' must be {len(chans) - 1} whole numbers in {list(b['stride'])}")
    if not _int_in(net.get("num_res_units", 1), *b["num_res_units"]):
        raise CheckpointError(f"{name}: network 'num_res_units' must be a whole number in {list(b['num_res_units'])}")
    d = net.get("dropout", 0.0)
    if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0.0 <= d < 1.0:
        raise CheckpointError(f"{name}: network 'dropout' must be in [0, 1)")
    if net.get("norm", "batch") not in ("batch", "none") or not isinstance(net.get("prior_residual", False), bool):
        raise CheckpointError(f"{name}: network 'norm' must be 'batch' or 'none' and 'prior_residual' true/false")


def check_compatible(meta: dict[str, Any], classes: Sequence[int], in_channels: int, source: str = "checkpoint") -> None:
    """Refuse a checkpoint whose classes or input channels differ from the current data."""
    ck_classes = [int(c) for c in meta.get("classes", [])]
    if ck_classes != [int(c) for c in classes]:
        raise CheckpointError(
            f"{source} was trained for classes {ck_classes} but the annotation has classes {list(classes)}"
        )
    ck_in = int(meta.get("network", {}).get("in_channels", -1))
    if ck_in != int(in_channels):
        raise CheckpointError(
            f"{source} expects {ck_in} input channel(s) but the current data gives {in_channels} "
            f"(pseudo-label input {'on' if in_channels > 1 else 'off'})"
        )
