"""The client side: drive a ``sparseseg serve`` over HTTP (httpx) with the same inputs and outputs.

``sparseseg segment ... --server URL`` and the widget's "Compute on: server" use it.  Every network
or server failure becomes one :class:`ServerError` line (the CLI prints it and exits 2); nothing is
written locally until the final result has arrived, so a lost server never leaves half a file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume
from . import wire
from .auth import read_token

TERMINAL = ("done", "cancelled", "error")
#: the server sends a keep-alive every 10 s; silence for longer means the connection is gone
STREAM_READ_TIMEOUT = 35.0


class ServerError(SparsesegError):
    """The server is unreachable, refused a request, or went away."""


@dataclass
class ServerEvent:
    """One streamed message: the session's status, and the newest prediction when it changed."""

    kind: str  # "status" or "prediction"
    state: str
    step: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    message: str = ""
    prediction: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    changed: tuple[slice, ...] | None = None
    nbytes: int = 0  # size of this message on the wire
    parts: dict[str, int] = field(default_factory=dict)  # encoded bytes of the labels / uncertainty blocks

    def train_event(self):
        """The same event as the local trainer's :class:`~napari_sparseseg.training.TrainEvent`."""
        from ..training.config import TrainEvent

        kind = self.state if self.state in TERMINAL else ("prediction" if self.kind == "prediction" else "step")
        return TrainEvent(kind, self.step, self.elapsed, self.eta, 0.0, dict(self.losses), self.prediction,
                          self.uncertainty, self.changed, self.message)


class ServerClient:
    """A connection to one server (token from ``$SPARSESEG_TOKEN`` / ``$SPARSESEG_TOKEN_FILE``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ServerError(f"server URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        token = token if token is not None else read_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + "/v1", headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, method: str, path: str, **kw: Any):
        import httpx

        try:
            r = self._http.request(method, path, **kw)
        except httpx.ConnectError:
            raise ServerError(f"cannot reach the server at {self.url} (is `sparseseg serve` running?)") from None
        except httpx.TimeoutException:
            raise ServerError(f"the server at {self.url} did not answer in time ({method} {path})") from None
        except httpx.TransportError as exc:
            raise ServerError(f"lost connection to the server at {self.url} ({type(exc).__name__})") from None
        if r.status_code >= 400:
            raise ServerError(_refusal(r, self.url))
        return r

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health").json()

    def open_session(self) -> RemoteSession:
        return RemoteSession(self, self.request("POST", "/sessions").json()["id"])

    def session(self, sid: str) -> RemoteSession:
        """Re-attach to a session that still exists on the server (after a lost connection)."""
        sess = RemoteSession(self, sid)
        sess.state()  # 404 -> ServerError if it ended or timed out
        return sess


def _refusal(r: Any, url: str) -> str:
    try:
        detail = r.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = r.text[:200]
    if r.status_code == 401:
        return f"the server at {url} needs a token: set SPARSESEG_TOKEN"
    if r.status_code == 403:
        return f"the server at {url} refused the token (SPARSESEG_TOKEN is wrong)"
    return f"server: {detail} (HTTP {r.status_code})"


class RemoteSession:
    """One session on the server: upload, pseudo-labels, train, watch, download."""

    def __init__(self, client: ServerClient, sid: str) -> None:
        self.client, self.id = client, sid
        self._decoder = wire.UpdateDecoder()
        self.bytes_received = 0

    def _p(self, tail: str = "") -> str:
        return f"/sessions/{self.id}{tail}"

    # -------------------------------------------------------------------------------- upload
    def upload_image(self, image: Volume) -> dict[str, Any]:
        return self.client.request("PUT", self._p("/image"), content=wire.volume_to_npz(image)).json()

    def upload_marks(self, marks: SparseAnnotation) -> dict[str, Any]:
        """New marks; while the server trains they warm-start it (same weights, new targets)."""
        return self.client.request("PUT", self._p("/marks"), content=wire.annotation_to_npz(marks)).json()

    def upload_init(self, checkpoint: str | Path) -> dict[str, Any]:
        return self.client.request("PUT", self._p("/init"), content=Path(checkpoint).read_bytes()).json()

    # ------------------------------------------------------------------------------- compute
    def pseudo(self, method: str = "auto", threshold: float = 0.5) -> dict[str, Any]:
        return self.client.request("POST", self._p("/pseudo"), json={"method": method, "threshold": threshold},
                                   timeout=None).json()

    def train(self, **options: Any) -> dict[str, Any]:
        return self.client.request("POST", self._p("/train"), json={"options": options}).json()

    def pause(self) -> dict[str, Any]:
        return self.client.request("POST", self._p("/pause")).json()

    def resume(self) -> dict[str, Any]:
        return self.client.request("POST", self._p("/resume")).json()

    def stop(self) -> dict[str, Any]:
        return self.client.request("POST", self._p("/stop")).json()

    def state(self) -> dict[str, Any]:
        return self.client.request("GET", self._p()).json()

    def events(self, _path: str = "/events") -> Iterator[ServerEvent]:
        """Status and prediction updates until the run ends; a cut connection raises :class:`ServerError`."""
        import httpx

        self._decoder = wire.UpdateDecoder()  # a new stream starts with the whole prediction
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        url = self.client.url
        ended = False
        try:
            with self.client._http.stream("GET", self._p(_path), timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ServerError(_refusal(r, url))
                name, data, size = "message", "", 0
                for line in r.iter_lines():
                    size += len(line) + 1
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and data:
                        ev = self._event(name, data, size)
                        self.bytes_received += size
                        name, data, size = "message", "", 0
                        yield ev
                        if ev.state in TERMINAL:
                            ended = True
                            return
                    elif line == "":
                        size = 0
        except httpx.TransportError as exc:
            raise ServerError(f"lost connection to the server at {url} during training ({type(exc).__name__}); "
                              "nothing was written") from None
        if not ended:
            raise ServerError(f"lost connection to the server at {url} during training (the stream ended early); "
                              "nothing was written")

    def _event(self, name: str, data: str, size: int) -> ServerEvent:
        try:
            msg = json.loads(data)
        except ValueError:
            raise ServerError("the server sent a malformed event") from None
        box, parts = None, {}
        if name == "prediction":
            update = msg.get("update") or {}
            box = self._decoder.apply(update)
            parts = {k: len(update[k].get("data", "")) for k in ("labels", "uncertainty") if isinstance(update.get(k), dict)}
        d = self._decoder
        return ServerEvent(name, str(msg.get("state", "")), int(msg.get("step", 0)), float(msg.get("elapsed", 0.0)),
                           msg.get("eta"), {k: (float("nan") if v is None else float(v)) for k, v in (msg.get("losses") or {}).items()},
                           str(msg.get("message", "")), d.labels if name == "prediction" else None,
                           d.uncertainty if name == "prediction" else None, box, size, parts)

    # ------------------------------------------------------------------------------ download
    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        r = self.client.request("GET", self._p("/result"))
        arrays = wire.read_npz(r.content, 1 << 36)
        return arrays["labels"], arrays.get("uncertainty")

    def download_model(self, path: str | Path) -> Path:
        from ..io import atomic_write_bytes

        r = self.client.request("GET", self._p("/model"))
        return atomic_write_bytes(path, r.content)

    # -------------------------------------------------------------------------------- cohort
    def add_scan(self, name: str, image: Volume, marks: SparseAnnotation | None = None) -> dict[str, Any]:
        """One scan of a study (marks optional: unmarked scans wait for marks)."""
        return self.client.request("PUT", self._p(f"/cohort/scans/{name}"), content=wire.scan_to_npz(image, marks)).json()

    def cohort_train(self, **options: Any) -> dict[str, Any]:
        """Train one network across the study's scans (CohortConfig fields); again = continue."""
        return self.client.request("POST", self._p("/cohort/train"), json={"options": options}).json()

    def cohort_control(self, action: str) -> dict[str, Any]:
        return self.client.request("POST", self._p(f"/cohort/{action}")).json()

    def cohort_events(self) -> Iterator[ServerEvent]:
        return self.events("/cohort/events")

    def download_cohort_model(self, path: str | Path) -> Path:
        from ..io import atomic_write_bytes

        return atomic_write_bytes(path, self.client.request("GET", self._p("/cohort/model")).content)

    def close(self) -> None:
        """End the session on the server (its files are deleted); quiet if the server is gone."""
        try:
            self.client.request("DELETE", self._p())
        except ServerError:
            pass


# ---------------------------------------------------------------------------------- the CLI
def run_segment(args: Any, image: Volume, ann: SparseAnnotation, write: Callable[[Path, np.ndarray, Volume], None],
                say: Callable[[str], None], stage: Callable[[Path], Path] = lambda p: p) -> int:
    """``sparseseg segment --server URL``: the same job on the server, the same outputs written here.

    ``write(path, array, like)`` writes a map and ``stage(path)`` names the file a downloaded model goes
    to (the command's staged temporaries, committed together after this returns)."""
    if args.method != "default":
        raise ServerError("--server runs the default method only (drop --method)")
    t0 = time.perf_counter()
    options = {"seed": args.seed, "network": args.network, "budget_seconds": args.budget_seconds,
               "max_steps": args.max_steps, "threshold": args.threshold, "threads": args.threads,
               "preview_every_seconds": 10.0, "first_preview_seconds": 4.0}
    with ServerClient(args.server) as client:
        info = client.health()
        sess = client.open_session()
        try:
            sess.upload_image(image)
            sess.upload_marks(ann)
            if args.init is not None:
                sess.upload_init(args.init)
            if args.pseudo_method != "none":
                say(f"pseudo-labels ({args.pseudo_method}) on {client.url} ({info.get('device')}) ...")
                sess.pseudo(args.pseudo_method, args.threshold)
            else:
                sess.pseudo("none")
            say(f"training on {client.url} ({info.get('device')}) for {args.budget_seconds:.0f} s")
            sess.train(**options)
            final = _follow(sess, args)
            if final.state != "done":
                raise ServerError(f"training on the server ended: {final.state} {final.message}".strip())
            labels, unc = sess.result()
            if args.save_model is not None:
                sess.download_model(stage(args.save_model))
            write(args.output, labels, image)
            if args.uncertainty is not None and unc is not None:
                write(args.uncertainty, unc, image)
        except KeyboardInterrupt:
            try:
                sess.stop()
            except ServerError:
                pass
            raise
        finally:
            sess.close()
    say(f"wrote {args.output} ({final.step} steps on the server, {time.perf_counter() - t0:.1f} s in total, "
        f"{sess.bytes_received / 1024:.0f} KiB streamed)")
    return 0


def _follow(sess: RemoteSession, args: Any) -> ServerEvent:
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=round(args.budget_seconds), unit="s", file=sys.stderr, desc="training (server)",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")
    final = None
    try:
        for ev in sess.events():
            if bar is not None:
                bar.n = min(round(ev.elapsed), bar.total)
                if ev.losses:
                    bar.set_postfix_str(f"step {ev.step} loss {ev.losses.get('total', float('nan')):.3f}", refresh=True)
            final = ev
    finally:
        if bar is not None:
            bar.close()
    assert final is not None
    return final
