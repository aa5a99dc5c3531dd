"""A headless engine session: one image, its marks, pseudo-labels and a trainer running in a thread.

Why a separate object (and no HTTP in it): the server only translates requests into these calls and
snapshots into streamed updates, so another controller (a headless loop, a test, a notebook) can drive
the same session without a web server, and the web layer can be swapped without touching the engine.
Everything here is thread-safe: requests arrive on the server's threads while training runs in its own.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume

#: states a session moves through; the last three end a training run
STATES = ("empty", "ready", "pseudo", "starting", "training", "paused", "done", "cancelled", "error")
TERMINAL = ("done", "cancelled", "error")
#: TrainConfig fields a client may not set: the server decides where it computes
_SERVER_ONLY = {"device"}


class EngineError(SparsesegError):
    """A request the session cannot honour in its current state (no image yet, training running...)."""


@dataclass
class Snapshot:
    """What a watcher needs to know, copied under the lock (arrays are the engine's own: read only)."""

    version: int
    run: int
    state: str
    step: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    message: str = ""
    prediction_version: int = 0
    labels: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


def train_config(options: dict[str, Any] | None, device: str):
    """A :class:`TrainConfig` from a client's JSON options (unknown or server-only keys refused)."""
    from ..training import TrainConfig

    options = dict(options or {})
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    bad = sorted(k for k in options if k not in known or k in _SERVER_ONLY)
    if bad:
        raise EngineError(f"unknown or server-only training option(s): {', '.join(bad)}")
    for k, v in list(options.items()):
        if isinstance(v, list):
            options[k] = tuple(v)
    try:
        return TrainConfig(device=device, **options)
    except TypeError as exc:
        raise EngineError(f"bad training options ({exc})") from None


class ThreadedSession:
    """What a server session that trains in its own thread shares: the trainer's controls and the
    versioned snapshot the stream reads (one condition variable, bumped on every change)."""

    _IDLE = "nothing is training"
    _NO_MODEL = "no model yet: train first"

    def __init__(self) -> None:
        self.trainer: Any = None
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._snap = Snapshot(version=0, run=0, state="empty")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        if self.trainer is None or not self.running:
            raise EngineError(self._IDLE)
        self.trainer.pause()
        self._update(state="paused")

    def resume(self) -> None:
        if self.trainer is None or not self.running:
            raise EngineError(self._IDLE)
        self.trainer.resume()
        self._update(state="training")

    def stop(self, wait: float | None = None) -> None:
        """Cancel training (honoured within about a second); the model keeps its weights."""
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.resume()
            self.trainer.cancel()
        if wait and self._thread is not None:
            self._thread.join(wait)

    def save_model(self, path: str | Path) -> Path:
        if self.trainer is None:
            raise EngineError(self._NO_MODEL)
        return self.trainer.save(path)

    def _update(self, new_prediction: bool = False, **fields: Any) -> None:
        with self._cond:
            s = self._snap
            for k, v in fields.items():
                setattr(s, k, v)
            s.version += 1
            if new_prediction:
                s.prediction_version += 1
            self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            return dataclasses.replace(self._snap, losses=dict(self._snap.losses))

    def wait_change(self, version: int, timeout: float) -> Snapshot:
        """The snapshot once its version passes ``version`` (or after ``timeout`` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: self._snap.version > version, timeout)
            return dataclasses.replace(self._snap, losses=dict(self._snap.losses))


class EngineSession(ThreadedSession):
    """The loop of the napari widget, without napari: marks -> pseudo-labels -> training -> predictions."""

    def __init__(self, device: str = "auto", workdir: str | Path | None = None) -> None:
        super().__init__()
        self.device = device
        self.workdir = Path(workdir) if workdir is not None else None
        self.image: Volume | None = None
        self.marks: SparseAnnotation | None = None
        self.pseudo: Any = None
        self.pseudo_method: str | None = None
        self.init: dict[str, Any] | None = None

    # ---------------------------------------------------------------------------- inputs

    def set_image(self, image: Volume) -> None:
        """A new image: forgets marks, pseudo-labels and model (they belonged to the old grid)."""
        if self.running:
            raise EngineError("training is running: stop it before replacing the image")
        self.image, self.marks, self.pseudo, self.trainer = image, None, None, None
        self._update(state="empty" if image is None else "ready", labels=None, uncertainty=None)

    def set_init(self, state_dict: dict, meta: dict) -> None:
        """Start the next new model from these weights (a checkpoint the client uploaded)."""
        if self.running:
            raise EngineError("training is running: set the initial weights before starting")
        self.init, self.trainer = {"state_dict": state_dict, "meta": meta}, None

    def set_marks(self, marks: SparseAnnotation) -> dict[str, Any]:
        """New marks.  While training runs they reach the trainer at once (warm start, same weights)."""
        if self.image is None:
            raise EngineError("upload the image before the marks")
        marks.validate(self.image.shape)
        self.marks = marks
        warm = False
        if self.trainer is not None and tuple(marks.classes) == tuple(self.trainer.classes):
            pseudo = self.pseudo.with_marks(marks) if hasattr(self.pseudo, "with_marks") else self.pseudo
            self.trainer.update_annotation(marks, pseudo)
            warm = True
        elif self.trainer is not None:
            if self.running:
                raise EngineError(f"classes changed to {list(marks.classes)} while training runs: stop it first")
            self.trainer = None  # new classes: the next start builds a new model
        self._update()
        return {"classes": list(marks.classes), "marked_voxels": int(marks.marked.sum()), "warm": warm}

    def compute_pseudo(self, method: str = "auto", threshold: float = 0.5) -> dict[str, Any]:
        """Pseudo-labels from the current marks (blocking: the caller runs it off its event loop)."""
        from ..pseudo import make_pseudo_labels

        image, marks = self._inputs()
        if self.running:
            raise EngineError("training is running: pseudo-labels are computed before it starts")
        self._update(state="pseudo")
        t0 = time.perf_counter()
        try:
            self.pseudo = None if method == "none" else make_pseudo_labels(image, marks, method=method, threshold=threshold)
        finally:
            self._update(state="ready")
        self.pseudo_method, self.trainer = method, None
        kept = self.pseudo.fraction_kept(threshold) if self.pseudo is not None else 0.0
        return {"method": method, "seconds": round(time.perf_counter() - t0, 3), "confident_fraction": kept}

    def _inputs(self) -> tuple[Volume, SparseAnnotation]:
        if self.image is None or self.marks is None:
            raise EngineError("upload the image and the marks first")
        return self.image, self.marks

    # ---------------------------------------------------------------------------- training
    def start(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train: a new model, or (when one exists) continue it from its current weights."""
        image, marks = self._inputs()
        if self.running:
            raise EngineError("training is already running")
        warm = self.trainer is not None
        config = None if warm else train_config(options, self.device)
        if warm and self.trainer.annotation is not marks:
            pseudo = self.pseudo.with_marks(marks) if hasattr(self.pseudo, "with_marks") else self.pseudo
            self.trainer.update_annotation(marks, pseudo)
        self._stop_requested = False
        with self._cond:
            run = self._snap.run + 1
        self._update(run=run, state="starting", message="", **({} if warm else {"step": 0, "losses": {}}))
        self._thread = threading.Thread(target=self._work, args=(run, image, marks, config), daemon=True,
                                        name=f"sparseseg-engine-{run}")
        self._thread.start()
        return {"run": run, "warm": warm}

    def _work(self, run: int, image: Volume, marks: SparseAnnotation, config: Any) -> None:
        from ..training import Trainer

        try:
            if self.trainer is None:
                self.trainer = Trainer(image, marks, config, pseudo=self.pseudo, init=self.init)
            self._update(state="training")
            for ev in self.trainer.run():
                if self._stop_requested:  # a stop that came while the model was being built
                    self.trainer.cancel()
                fields: dict[str, Any] = {"step": ev.step, "elapsed": ev.elapsed, "eta": ev.eta,
                                          "losses": dict(ev.losses)}
                if ev.prediction is not None:
                    fields.update(labels=ev.prediction, uncertainty=ev.uncertainty, new_prediction=True)
                if ev.kind in TERMINAL:
                    fields.update(state=ev.kind, message=ev.message)
                elif self.trainer.paused:
                    fields["state"] = "paused"
                else:
                    fields["state"] = "training"
                self._update(**fields)
        except BaseException as exc:  # noqa: BLE001 - the session reports it; the server keeps running
            traceback.print_exc()
            msg = str(exc) if isinstance(exc, SparsesegError) else f"{type(exc).__name__}: {exc}"
            self._update(state="error", message=msg)

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The newest full prediction and uncertainty (float32), for the final download."""
        s = self.snapshot()
        if s.labels is None:
            raise EngineError("no prediction yet")
        return s.labels, s.uncertainty

    def close(self, wait: float = 5.0) -> None:
        self.stop(wait=wait)
