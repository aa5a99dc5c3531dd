"""Fast CPU path for the image encoder: the same weights run by ONNX Runtime.

Measured on this project's 2-core machine (bench/scripts/bench_sam_speed.py): ONNX Runtime fp32 runs the
LiteMedSAM TinyViT encoder 2.4-3x faster than eager torch with identical embeddings (max abs
difference ~1e-6); dynamic int8 quantisation (torch or ONNX Runtime) was slower or changed the
embedding too much (max abs error 0.2-0.8), so it is not used.  The mask decoder is exported too
(1.6x faster than torch on the same loaded machine, max abs difference 3e-5).

The exported graph is cached next to the embedding cache, keyed by the backend's weight
fingerprint, so the ~10 s export happens once per model and machine.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .backend import SamBackend

log = logging.getLogger(__name__)


def onnx_available() -> bool:
    """ONNX export (onnx) and ONNX Runtime both present (the ``export`` extra)."""
    from .._optional import available

    return available("onnxruntime") and available("onnx")


class OnnxEncoder:
    """Callable drop-in for ``backend.image_encoder``: ``(1, 3, S, S)`` tensor in, embedding tensor out.

    The session is created on the first call: loading and optimising the graph takes seconds on a
    busy CPU, and a run whose embeddings all come from the disk cache never needs it.
    """

    def __init__(self, path: str | Path, threads: int | None = None, fallback: torch.nn.Module | None = None) -> None:
        self.path = Path(path)
        self.threads = int(threads or min(2, os.cpu_count() or 1))
        self.session = None
        self.input_name = "x"
        #: used instead if the session cannot be created (a damaged cached graph): never block the user
        self.fallback = fallback

    def _open(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is None:
            if self.fallback is not None and getattr(self, "_failed", False):
                return self.fallback(x)
            try:
                self._open()
            except Exception as exc:
                if self.fallback is None:
                    raise
                self._failed = True
                log.warning("fast encoder unavailable (%s): using eager torch", exc)
                return self.fallback(x)
        y = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(y)


class OnnxMaskDecoder:
    """ONNX Runtime copy of ``MaskDecoder.predict_masks`` (all mask tokens; the caller picks 1 or 3).

    One intra-op thread: the decoder's tensors are small, and on a busy 2-core machine a second
    thread made the torch decoder 4-9x *slower* (thread hand-off under oversubscription).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def __call__(self, feats: torch.Tensor, pe: torch.Tensor, sparse: torch.Tensor,
                 dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        m, iou = self.session.run(None, {"f": f(feats), "pe": f(pe), "sp": f(sparse), "de": f(dense)})
        return torch.from_numpy(m), torch.from_numpy(iou)


class _PredictMasks(torch.nn.Module):
    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, f, pe, sp, de):  # noqa: D102
        return self.decoder.predict_masks(f, pe, sp, de)


def export_decoder(backend: SamBackend, path: str | Path) -> Path:
    """Export the mask decoder (dynamic number of masks and prompt tokens) to ONNX, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    emb_hw = tuple(int(v) for v in backend.prompt_encoder.image_embedding_size)
    with torch.no_grad():
        c = int(backend.prompt_encoder.embed_dim)
        feats = torch.zeros((1, c) + emb_hw)
        pe = backend.prompt_encoder.get_dense_pe().detach().cpu()
        sp, de = backend.prompt_encoder(points=None, boxes=torch.zeros(1, 1, 4, device=backend.device), masks=None)
        sp, de = sp.detach().cpu(), de.detach().cpu()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_PredictMasks(backend.mask_decoder.cpu()), (feats, pe, sp, de), str(tmp),
                          input_names=["f", "pe", "sp", "de"], output_names=["m", "iou"], opset_version=17,
                          dynamo=False, dynamic_axes={"sp": {0: "n", 1: "t"}, "de": {0: "n"}, "m": {0: "n"},
                                                      "iou": {0: "n"}})
    backend.mask_decoder.to(backend.device)
    os.replace(tmp, path)
    return path


def export_encoder(backend: SamBackend, path: str | Path) -> Path:
    """Export the backend's image encoder to ONNX (fixed 1 x 3 x S x S input), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 3, backend.image_size, backend.image_size)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(backend.image_encoder.cpu(), (x,), str(tmp), input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)
    backend.image_encoder.to(backend.device)
    os.replace(tmp, path)
    return path


def enable_fast_encoder(backend: SamBackend, cache_dir: str | Path | None = None) -> bool:
    """Switch ``backend`` to the ONNX Runtime encoder on CPU; returns False (eager stays) if unavailable.

    Only on CPU: on CUDA/MPS eager torch is already fast.
    """
    if backend.device.type != "cpu" or backend.fast_encoder is not None:
        return backend.fast_encoder is not None
    if not onnx_available():
        log.warning("onnx/onnxruntime not installed: using the eager torch encoder "
                    "(pip install 'napari-sparseseg[export]' for the faster CPU encoder)")
        return False
    from .cache import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir().parent / "onnx"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in backend.fingerprint)
    path = root / f"{backend.name}_{safe}_{backend.image_size}.onnx"
    dec_path = root / f"{backend.name}_{safe}_{backend.image_size}_decoder.onnx"
    try:
        if not path.exists():
            export_encoder(backend, path)
        backend.fast_encoder = OnnxEncoder(path, fallback=backend.image_encoder)
    except Exception as exc:  # exporter or runtime problem: never block the user, fall back to eager
        log.warning("fast encoder unavailable (%s): using eager torch", exc)
        return False
    try:
        if not dec_path.exists():
            export_decoder(backend, dec_path)
        backend.fast_decoder = OnnxMaskDecoder(dec_path)
    except Exception as exc:
        log.warning("fast decoder unavailable (%s): using eager torch", exc)
    return True
