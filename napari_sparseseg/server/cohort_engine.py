"""A headless study session: the scans of a study (with or without marks) and one cohort network.

The same shape as :class:`~napari_sparseseg.server.engine.EngineSession` where a watcher is concerned
(``snapshot()``: state, step, losses, ETA), so the server streams it with the same code; it drives
:class:`~napari_sparseseg.cohort.CohortTrainer` (pseudo-labels per scan, then one network across them,
pausable, resumable from its work folder) instead of the per-scan trainer.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import traceback
from pathlib import Path
from typing import Any

from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume
from .engine import TERMINAL, EngineError, Snapshot

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


class CohortSession:
    """Scans in, one cohort model out; training runs in its own thread."""

    def __init__(self, device: str = "auto", workdir: str | Path | None = None) -> None:
        self.device = device
        self.workdir = Path(workdir) if workdir is not None else None
        self.scans: dict[str, tuple[Volume, SparseAnnotation | None]] = {}
        self.trainer: Any = None
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._cond = threading.Condition()
        self._snap = Snapshot(version=0, run=0, state="empty")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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

    def pause(self) -> None:
        if self.trainer is None or not self.running:
            raise EngineError("no cohort is training")
        self.trainer.pause()
        self._update(state="paused")

    def resume(self) -> None:
        if self.trainer is None or not self.running:
            raise EngineError("no cohort is training")
        self.trainer.resume()
        self._update(state="training")

    def stop(self, wait: float | None = None) -> None:
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.resume()
            self.trainer.cancel()
        if wait and self._thread is not None:
            self._thread.join(wait)

    def save_model(self, path: str | Path) -> Path:
        if self.trainer is None:
            raise EngineError("no cohort model yet: train first")
        return self.trainer.save(path)

    def _update(self, **fields: Any) -> None:
        with self._cond:
            for k, v in fields.items():
                setattr(self._snap, k, v)
            self._snap.version += 1
            self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            return dataclasses.replace(self._snap, losses=dict(self._snap.losses))

    def close(self, wait: float = 5.0) -> None:
        self.stop(wait=wait)
