"""Client sessions: one engine and one private temporary folder each, removed on end or when idle.

Why sessions (and not one global engine): several clinicians share one GPU box; each upload,
pseudo-label map and model belongs to exactly one session id, an unguessable random string, so one
client cannot reach another's data even though they share the server's token.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import EngineSession


@dataclass
class Session:
    id: str
    folder: Path
    engine: EngineSession
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    streams: int = 0  # open event streams keep a session alive
    cohort: Any = None  # a CohortSession, made on the first scan of a study

    def study(self) -> Any:
        if self.cohort is None:
            from .cohort_engine import CohortSession

            self.cohort = CohortSession(self.engine.device, self.folder)
        return self.cohort

    def touch(self) -> None:
        self.last_seen = time.monotonic()


class SessionFull(Exception):
    pass


class SessionStore:
    """Thread-safe session table with an idle reaper."""

    def __init__(self, workdir: Path, device: str = "auto", idle_timeout: float = 1800.0, max_sessions: int = 8,
                 owns_workdir: bool = False) -> None:
        self.workdir = Path(workdir)
        self.owns_workdir = owns_workdir  # a folder made for this server: removed by close()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.idle_timeout = float(idle_timeout)
        self.max_sessions = int(max_sessions)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def create(self) -> Session:
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise SessionFull(f"the server holds {self.max_sessions} sessions already; try again later")
            sid = secrets.token_urlsafe(18)
            folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.workdir))
            sess = Session(sid, folder, EngineSession(self.device, folder))
            self._sessions[sid] = sess
        return sess

    def get(self, sid: str) -> Session | None:
        with self._lock:
            sess = self._sessions.get(sid)
        if sess is not None:
            sess.touch()
        return sess

    def remove(self, sid: str) -> bool:
        """End a session: stop its training, delete its folder."""
        with self._lock:
            sess = self._sessions.pop(sid, None)
        if sess is None:
            return False
        sess.engine.close(wait=5.0)
        if sess.cohort is not None:
            sess.cohort.close(wait=5.0)
        shutil.rmtree(sess.folder, ignore_errors=True)
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def reap(self) -> list[str]:
        """Remove sessions idle for longer than the timeout (no request and no open stream)."""
        now = time.monotonic()
        with self._lock:
            idle = [s.id for s in self._sessions.values() if s.streams == 0 and now - s.last_seen > self.idle_timeout]
        for sid in idle:
            self.remove(sid)
        return idle

    def start_reaper(self, every: float | None = None) -> None:
        period = every or max(1.0, min(60.0, self.idle_timeout / 4))

        def loop() -> None:
            while not self._stop.wait(period):
                self.reap()

        self._reaper = threading.Thread(target=loop, name="sparseseg-session-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            ids = list(self._sessions)
        for sid in ids:
            self.remove(sid)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
