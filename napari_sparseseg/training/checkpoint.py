"""Checkpoints: one ``.safetensors`` file holding the weights plus a JSON metadata header.

Why safetensors: loading never executes pickled code (a checkpoint from a colleague or the web
cannot run anything), and one file carries weights and metadata together.  The metadata records
what the weights mean (classes, background label, network, spacing, normalisation, version) so a
mismatching checkpoint is refused with a message naming both sides instead of producing garbage.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import CheckpointError

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(full)})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; any unreadable or foreign file raises :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

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
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path.name}: corrupt metadata ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not a napari-sparseseg checkpoint (format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} uses checkpoint format {meta.get('format_version')}; this version reads up to {FORMAT_VERSION}"
        )
    return state, meta


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
