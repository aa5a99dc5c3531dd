"""``sparseseg serve``: run the engine as a server, so a laptop can train on a GPU machine.

The token comes from ``SPARSESEG_TOKEN`` or a file, never from an argument (see
:mod:`napari_sparseseg.server.auth`); without one the server only listens on a loopback address.
Put it behind a TLS reverse proxy to cross a network: docs/server.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the engine over HTTP (a GPU box computing for napari on a laptop)",
        description="Serve pseudo-labels, training and streamed predictions over HTTP (FastAPI + uvicorn). "
        "The bearer token comes from $SPARSESEG_TOKEN, $SPARSESEG_TOKEN_FILE or --token-file; without one "
        "only a loopback address is allowed. Use a TLS reverse proxy across a network (docs/server.md).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where sessions keep their files (default: a new temporary folder, removed on exit)")
    p.add_argument("--token-file", type=Path, default=None, help="file whose first line is the token")
    p.add_argument("--max-upload-mb", type=float, default=1024.0, help="largest accepted request body (default 1024)")
    p.add_argument("--max-voxels", type=int, default=512**3, help="largest accepted volume in voxels")
    p.add_argument("--idle-timeout", type=float, default=1800.0,
                   help="end a session (and delete its files) after this many seconds without a request")
    p.add_argument("--max-sessions", type=int, default=8)
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import uvicorn

        from ..server.app import create_app
    except ImportError as exc:
        from ..errors import SparsesegError

        raise SparsesegError(f"the server needs its extra: pip install 'napari-sparseseg[server]' ({exc.name} missing)") from None
    from ..server.auth import check_server_token, read_token
    from ..server.sessions import SessionStore
    from ..training import pick_device

    token = read_token(args.token_file)
    check_server_token(args.host, token)
    own = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="sparseseg-serve-")) if own else args.workdir
    store = SessionStore(workdir, device=args.device, idle_timeout=args.idle_timeout, max_sessions=args.max_sessions,
                         owns_workdir=own)
    app = create_app(store, token, int(args.max_upload_mb * 2**20), int(args.max_voxels))
    device = pick_device(args.device)
    print(f"sparseseg serve: http://{args.host}:{args.port} (device {device}, token "
          f"{'required' if token else 'NONE: loopback only'}, sessions in {workdir})", file=sys.stderr, flush=True)
    try:  # the app's shutdown closes the store (uvicorn re-raises SIGTERM after it, skipping any `finally` here)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    finally:
        store.close()
    return 0
