"""A stand-in for :class:`~napari_sparseseg.training.Trainer` whose work happens on a server.

Why the same shape as the local trainer (``run()`` yielding ``TrainEvent``s, ``pause``/``resume``/
``cancel``/``update_annotation``, ``classes``, ``save``): the widget's runner, its Pause/Stop buttons and
its "Accept corrections" warm start then work unchanged, and streamed predictions land in the same
layers.  Controls are sent from one background thread, in order, so a slow or dead network never
freezes napari; the stream itself reports a lost connection as one :class:`ServerError`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..annotations.sparse import SparseAnnotation
from ..errors import AnnotationError
from ..io.volume import Volume
from .client import RemoteSession, ServerClient, ServerError

log = logging.getLogger("napari_sparseseg.server")
KEEP_LOCAL = "your marks stay here (autosaved); press Start to reconnect"


class RemoteTrainer:
    """One model on a server: the session that holds it, and the inputs to rebuild it if that session ended."""

    def __init__(self, client: ServerClient, image: Volume, annotation: SparseAnnotation, method: str, config: Any) -> None:
        self.client, self.image, self.annotation, self.method, self.config = client, image, annotation, method, config
        self.classes = tuple(annotation.classes)
        self.device = f"server {client.url}"
        self.session: RemoteSession | None = None
        self.step = 0
        self.bytes_received = 0
        self._new_model = True
        self._pseudo_done = False
        self._paused = False
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseseg-remote")

    # ------------------------------------------------------------------------------ set-up
    def connect(self, report: Callable[[str], None] = lambda _m: None, should_stop: Callable[[], bool] = lambda: False) -> RemoteTrainer:
        """A new session with the image, the marks and its pseudo-labels (a new, untrained model)."""
        info = self.client.health()
        report(f"uploading to {self.client.url} ({info.get('device')})...")
        sess = self.client.open_session()
        try:
            sess.upload_image(self.image)
            sess.upload_marks(self.annotation)
        except BaseException:
            sess.close()
            raise
        if self.session is not None:
            self.session.close()
        self.session, self._new_model, self._pseudo_done, self.step = sess, True, False, 0
        if not should_stop():
            report(f"pseudo-labels ({self.method}) on the server...")
            self._pseudo()
        return self

    def _pseudo(self) -> None:
        assert self.session is not None
        self.session.pseudo(self.method, float(self.config.threshold))
        self._pseudo_done = True

    def _options(self) -> dict[str, Any]:
        opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.config).items()}
        opts.pop("device", None)  # the server decides where it computes
        return opts

    # ---------------------------------------------------------------------------- controls
    def _send(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        def call() -> None:
            try:
                fn(*args)
            except ServerError as exc:  # the stream reports a lost server; here it is only logged
                log.warning("%s on the server failed: %s", what, exc)

        self._calls.submit(call)

    def pause(self) -> None:
        self._paused = True
        if self.session is not None:
            self._send("pause", self.session.pause)

    def resume(self) -> None:
        self._paused = False
        if self.session is not None:
            self._send("resume", self.session.resume)

    def cancel(self) -> None:
        if self.session is not None:
            self._send("stop", self.session.stop)

    @property
    def paused(self) -> bool:
        return self._paused

    def update_annotation(self, ann: SparseAnnotation, pseudo: Any | None = None) -> None:  # noqa: ARG002
        """New marks: the server mixes them into its pseudo-labels and keeps training from the current weights."""
        ann.validate(self.image.shape)
        if tuple(ann.classes) != self.classes:
            raise AnnotationError(f"classes changed from {list(self.classes)} to {list(ann.classes)}; start a new model")
        self.annotation = ann
        if self.session is not None:
            self._send("new marks", self.session.upload_marks, ann)

    # -------------------------------------------------------------------------------- loop
    def _start(self) -> None:
        assert self.session is not None
        try:
            self.session.state()
        except ServerError as exc:
            if "no such session" not in str(exc):
                raise
            log.warning("the server session ended; starting a new one (the model starts over)")
            self.connect()
        self.session.upload_marks(self.annotation)
        if not self._pseudo_done:  # stopped before they were computed
            self._pseudo()
        self.session.train(**(self._options() if self._new_model else {}))
        self._new_model = False

    def run(self) -> Iterator[Any]:
        """Train on the server (continue when a model exists) and yield its events as local ``TrainEvent``s."""
        if self.session is None:
            self.connect()
        try:
            self._calls.submit(self._start).result()  # after any control still on its way
            assert self.session is not None
            for sev in self.session.events():
                ev = sev.train_event()
                if ev.prediction is not None:  # the decoder patches its arrays in place: hand out a copy
                    ev.prediction, ev.uncertainty = ev.prediction.copy(), None if ev.uncertainty is None else ev.uncertainty.copy()
                self.step = ev.step
                yield ev
        except ServerError as exc:
            raise ServerError(f"{exc}; {KEEP_LOCAL}") from None
        finally:
            if self.session is not None:
                self.bytes_received = self.session.bytes_received

    def save(self, path: str | Path) -> Path:
        if self.session is None:
            raise ServerError("no model on the server yet")
        return self.session.download_model(path)

    def close(self) -> None:
        """End the server session (its files are deleted there)."""
        if self.session is not None:
            self._calls.submit(self.session.close)
        self._calls.shutdown(wait=False)


def remote_job(url: str, image: Volume, annotation: SparseAnnotation, method: str, config: Any,
               token: str | None = None) -> Callable[[Callable[[str], None], Callable[[], bool]], RemoteTrainer]:
    """The widget runner's ``job(report, should_stop) -> trainer`` for a server."""

    def job(report: Callable[[str], None], should_stop: Callable[[], bool]) -> RemoteTrainer:
        return RemoteTrainer(ServerClient(url, token), image, annotation, method, config).connect(report, should_stop)

    return job
