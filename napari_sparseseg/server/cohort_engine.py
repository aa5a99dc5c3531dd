"""A headless study session: the scans of a study (with or without marks) and one cohort network.

The same shape as :class:`~napari_sparseseg.server.engine.EngineSession` where a watcher is concerned
(``snapshot()``: state, step, losses, ETA), so the server streams it with the same code; it drives
:class:`~napari_sparseseg.cohort.CohortTrainer` (pseudo-labels per scan, then one network across them,
pausable, resumable from its work folder) instead of the per-scan trainer.
"""

from __future__ import annotations

import re
import threading
import traceback
from pathlib import Path
from typing import Any

from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume
from .engine import TERMINAL, EngineError, ThreadedSession

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def cohort_config(options: dict[str, Any] | None, device: str):
    from ..cohort import CohortConfig

    options = dict(options or {})
    bad = sorted(k for k in options if k not in CohortConfig.__dataclass_fields__ or k == "device")
    if bad:
        raise EngineError(f"unknown or server-only cohort option(s): {', '.join(bad)}")
    try:
        return CohortConfig.from_dict({**options, "device": device})
    except (TypeError, ValueError) as exc:
        raise EngineError(f"bad cohort options ({exc})") from None


class CohortSession(ThreadedSession):
    """Scans in, one cohort model out; training runs in its own thread."""

    _IDLE = "no cohort is training"
    _NO_MODEL = "no cohort model yet: train first"

    def __init__(self, device: str = "auto", workdir: str | Path | None = None) -> None:
        super().__init__()
        self.device = device
        self.workdir = Path(workdir) if workdir is not None else None
        self.scans: dict[str, tuple[Volume, SparseAnnotation | None]] = {}

    def add_scan(self, name: str, image: Volume, annotation: SparseAnnotation | None) -> dict[str, Any]:
        """Add (or replace) one scan; a running cohort takes it at its next run."""
        if not NAME.match(name):
            raise EngineError(f"scan name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
        if annotation is not None:
            annotation.validate(image.shape)
        self.scans[name] = (image, annotation)
        self._update(state="ready")
        marked = sum(1 for _img, ann in self.scans.values() if ann is not None and ann.marked.any())
        return {"scans": len(self.scans), "marked": marked}

    def start(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train the cohort network (a second call continues it, with any scans added since)."""
        from ..cohort import CohortScan

        if self.running:
            raise EngineError("cohort training is already running")
        if not self.scans:
            raise EngineError("add the study's scans first")
        scans = [CohortScan(img, ann, name) for name, (img, ann) in self.scans.items()]
        warm = self.trainer is not None
        config = None if warm else cohort_config(options, self.device)
        self._stop_requested = False
        with self._cond:
            run = self._snap.run + 1
        self._update(run=run, state="starting", message="")
        self._thread = threading.Thread(target=self._work, args=(scans, config), daemon=True, name=f"sparseseg-cohort-{run}")
        self._thread.start()
        return {"run": run, "warm": warm, "scans": len(scans)}

    def _work(self, scans: list, config: Any) -> None:
        from ..cohort import CohortTrainer

        try:
            if self.trainer is None:
                work = self.workdir / "cohort" if self.workdir is not None else None
                self.trainer = CohortTrainer(scans, config, workdir=work)
            else:
                known = {s.name for s in self.trainer.scans}
                self.trainer.add_scans([s for s in scans if s.name not in known])
            self._update(state="training")
            for ev in self.trainer.run():
                if self._stop_requested:
                    self.trainer.cancel()
                state = ev.kind if ev.kind in TERMINAL else ("paused" if self.trainer.paused else "training")
                self._update(state=state, step=ev.step, elapsed=ev.elapsed, eta=ev.eta, losses=dict(ev.losses),
                             message=ev.message if ev.kind != "step" else self._snap.message)
        except BaseException as exc:  # noqa: BLE001 - reported to the client; the server keeps running
            traceback.print_exc()
            msg = str(exc) if isinstance(exc, SparsesegError) else f"{type(exc).__name__}: {exc}"
            self._update(state="error", message=msg)

    def close(self, wait: float = 5.0) -> None:
        self.stop(wait=wait)
