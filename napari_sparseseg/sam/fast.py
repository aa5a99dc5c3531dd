"""Fast CPU path for the image encoder: the same weights run by ONNX Runtime.

Measured on this project's 2-core machine (bench/bench_sam_speed.py): ONNX Runtime fp32 runs the
LiteMedSAM TinyViT encoder about 3x faster than eager torch with identical embeddings (max abs
difference ~1e-6); dynamic int8 quantisation (torch or ONNX Runtime) was slower or changed the
embedding too much, so it is not used.

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
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxEncoder:
    """Callable drop-in for ``backend.image_encoder``: ``(1, 3, S, S)`` tensor in, embedding tensor out."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or min(2, os.cpu_count() or 1))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(y)


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
        log.warning("onnxruntime is not installed: using the eager torch encoder")
        return False
    from .cache import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir().parent / "onnx"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in backend.fingerprint)
    path = root / f"{backend.name}_{safe}_{backend.image_size}.onnx"
    try:
        if not path.exists():
            export_encoder(backend, path)
        backend.fast_encoder = OnnxEncoder(path)
    except Exception as exc:  # exporter or runtime problem: never block the user, fall back to eager
        log.warning("fast encoder unavailable (%s): using eager torch", exc)
        return False
    return True
