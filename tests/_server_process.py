"""Start a real ``sparseseg serve`` on 127.0.0.1 in a subprocess (shared by the server and widget tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(token: str | None = TOKEN) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SPARSESEG_TOKEN_FILE", None)
    if token is None:
        env.pop("SPARSESEG_TOKEN", None)
    else:
        env["SPARSESEG_TOKEN"] = token
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start_server(workdir: Path, *extra: str, token: str | None = TOKEN, wait: float = 180.0,
                 port: int | None = None) -> tuple[subprocess.Popen, str]:
    """The server process and its URL, once ``/v1/health`` answers."""
    import httpx

    port = port or free_port()
    log = open(workdir.parent / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "napari_sparseseg.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--workdir", str(workdir), *extra], env=server_env(token), cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {(workdir.parent / f'serve-{port}.log').read_text()}")
        try:
            if httpx.get(url + "/v1/health", headers=headers, timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start in time")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
