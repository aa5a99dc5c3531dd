"""The HTTP face of the engine (FastAPI): sessions, uploads, training controls, a prediction stream.

Routes (all under ``/v1``, every one behind the bearer token when the server has one):

====================================  =========================================================
``GET  /health``                      version, device, number of sessions
``POST /sessions``                    a new session -> ``{"id": ...}``; ``DELETE /sessions/{id}`` ends it
``GET  /sessions/{id}``               its state (JSON)
``PUT  /sessions/{id}/image``         the scan: npz (``array``, ``affine``) or NIfTI (.nii / .nii.gz)
``PUT  /sessions/{id}/marks``         the marks: npz (``labels``, ``background_label``, ``classes``) or
                                      NIfTI + ``?background_label=N``; while training: a warm start
``PUT  /sessions/{id}/init``          starting weights (safetensors checkpoint)
``POST /sessions/{id}/pseudo``        compute pseudo-labels ``{"method", "threshold"}``; ``GET`` = npz
``POST /sessions/{id}/train``         start, or continue from the current weights ``{"options": {...}}``
``POST /sessions/{id}/pause|resume|stop``
``GET  /sessions/{id}/events``        server-sent events: ``status`` and ``prediction`` (changed box only)
``GET  /sessions/{id}/result``        the newest prediction + uncertainty, full precision (npz)
``GET  /sessions/{id}/model``         the trained model (safetensors)
``PUT  /sessions/{id}/cohort/scans/{name}``  one scan of a study (npz: image, marks if any)
``POST /sessions/{id}/cohort/train``  one network across the study's scans; ``pause|resume|stop``,
                                      ``GET .../cohort/events`` (status) and ``GET .../cohort/model``
====================================  =========================================================

Why server-sent events: one long HTTP response that any HTTP client and proxy understands, with
automatic text framing; the client reconnects with a plain GET and gets the full state first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import SparsesegError
from . import wire
from .auth import token_matches
from .engine import TERMINAL, EngineError, Snapshot
from .sessions import Session, SessionFull, SessionStore

API = "/v1"
NPZ = "application/x-npz"
KEEPALIVE_SECONDS = 10.0
POLL_SECONDS = 0.05


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def status_json(s: Snapshot) -> dict[str, Any]:
    return {"run": s.run, "state": s.state, "step": s.step, "elapsed": round(s.elapsed, 3),
            "eta": None if s.eta is None else round(s.eta, 3), "message": s.message,
            "losses": {k: _finite(v) for k, v in s.losses.items()}, "prediction_version": s.prediction_version}


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def create_app(store: SessionStore, token: str | None, max_upload_bytes: int, max_voxels: int) -> FastAPI:
    """The application; ``store`` owns the sessions (and is closed when the app shuts down)."""
    from .. import __version__

    bearer = HTTPBearer(auto_error=False)

    def authorise(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        if creds is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not token_matches(creds.credentials, token):
            raise HTTPException(403, "wrong token")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store.start_reaper()
        try:
            yield
        finally:
            await run_in_threadpool(store.close)

    app = FastAPI(title="napari-sparseseg server", version=__version__, lifespan=lifespan,
                  dependencies=[Depends(authorise)], docs_url=None, redoc_url=None, openapi_url=None)
    max_array_bytes = max_voxels * 8

    @app.exception_handler(SparsesegError)
    async def _user_error(_request: Request, exc: SparsesegError) -> JSONResponse:
        code = 413 if isinstance(exc, wire.TooLarge) else 409 if isinstance(exc, EngineError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(SessionFull)
    async def _full(_request: Request, exc: SessionFull) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    def session(sid: str) -> Session:
        sess = store.get(sid)
        if sess is None:
            raise HTTPException(404, "no such session (it ended or timed out); start a new one")
        return sess

    async def body(request: Request) -> bytes:
        """The request body, refused (413) as soon as it passes the limit."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            raise HTTPException(413, f"upload of {int(declared)} bytes exceeds the limit of {max_upload_bytes}")
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > max_upload_bytes:
                raise HTTPException(413, f"upload exceeds the limit of {max_upload_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def check_voxels(shape: tuple[int, ...]) -> None:
        n = math.prod(shape)
        if n > max_voxels:
            raise wire.TooLarge(f"a volume of {n} voxels exceeds the server's limit of {max_voxels}")

    def nifti_volume(sess: Session, data: bytes, name: str, is_label: bool):
        from ..io import read_nifti, read_nifti_header

        path = sess.folder / (name + (".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii"))
        path.write_bytes(data)
        try:
            shape, _, _ = read_nifti_header(path)
            check_voxels(tuple(shape))
            return read_nifti(path, is_label=is_label)
        finally:
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ sessions
    @app.get(API + "/health")
    async def health() -> dict[str, Any]:
        from ..training import pick_device

        return {"version": __version__, "device": str(pick_device(store.device)), "sessions": len(store),
                "max_upload_bytes": max_upload_bytes, "max_voxels": max_voxels}

    @app.post(API + "/sessions", status_code=201)
    async def new_session() -> dict[str, Any]:
        return {"id": store.create().id, "idle_timeout": store.idle_timeout}

    @app.delete(API + "/sessions/{sid}")
    async def end_session(sid: str) -> dict[str, Any]:
        session(sid)
        await run_in_threadpool(store.remove, sid)
        return {"ended": sid}

    @app.get(API + "/sessions/{sid}")
    async def state(sid: str) -> dict[str, Any]:
        return status_json(session(sid).engine.snapshot())

    # ------------------------------------------------------------------------------- uploads
    @app.put(API + "/sessions/{sid}/image")
    async def put_image(sid: str, request: Request) -> dict[str, Any]:
        sess = session(sid)
        data = await body(request)

        def load():
            if data[:4] == b"PK\x03\x04":
                vol = wire.volume_from_npz(data, max_array_bytes)
                check_voxels(vol.shape)
            else:
                vol = nifti_volume(sess, data, "image", is_label=False)
            sess.engine.set_image(vol)
            return {"shape": list(vol.shape), "spacing": list(vol.spacing), "bytes": len(data)}

        return await run_in_threadpool(load)

    @app.put(API + "/sessions/{sid}/marks")
    async def put_marks(sid: str, request: Request, background_label: int | None = None,
                        classes: str | None = None) -> dict[str, Any]:
        sess = session(sid)
        data = await body(request)

        def load():
            from ..annotations.sparse import SparseAnnotation

            if data[:4] == b"PK\x03\x04":
                ann = wire.annotation_from_npz(data, max_array_bytes)
                check_voxels(ann.shape)
            else:
                if background_label is None:
                    raise wire.WireError("NIfTI marks need ?background_label=N")
                vol = nifti_volume(sess, data, "marks", is_label=True)
                cls = tuple(int(c) for c in classes.split(",")) if classes else ()
                ann = SparseAnnotation(vol.array, background_label, cls)
            return sess.engine.set_marks(ann)

        return await run_in_threadpool(load)

    @app.put(API + "/sessions/{sid}/init")
    async def put_init(sid: str, request: Request) -> dict[str, Any]:
        sess = session(sid)
        data = await body(request)

        def load():
            from ..training import load_checkpoint

            path = sess.folder / "init.safetensors"
            path.write_bytes(data)
            state_dict, meta = load_checkpoint(path)
            meta["_source"] = "uploaded checkpoint"
            sess.engine.set_init(state_dict, meta)
            return {"classes": meta.get("classes"), "steps": meta.get("steps")}

        return await run_in_threadpool(load)

    # ------------------------------------------------------------------------------- compute
    @app.post(API + "/sessions/{sid}/pseudo")
    async def pseudo(sid: str, request: Request) -> dict[str, Any]:
        sess = session(sid)
        opts = await _json(request)
        method, threshold = str(opts.get("method", "auto")), float(opts.get("threshold", 0.5))
        return await run_in_threadpool(sess.engine.compute_pseudo, method, threshold)

    @app.get(API + "/sessions/{sid}/pseudo")
    async def get_pseudo(sid: str) -> Response:
        p = session(sid).engine.pseudo
        if p is None:
            raise HTTPException(404, "no pseudo-labels: POST /pseudo first")
        data = await run_in_threadpool(wire.to_npz, {"labels": p.labels, "confidence": p.confidence})
        return Response(data, media_type=NPZ)

    @app.post(API + "/sessions/{sid}/train")
    async def train(sid: str, request: Request) -> dict[str, Any]:
        sess = session(sid)
        opts = await _json(request)
        return sess.engine.start(opts.get("options") or {})

    # -------------------------------------------------------------------------------- cohort
    @app.put(API + "/sessions/{sid}/cohort/scans/{name}")
    async def put_scan(sid: str, name: str, request: Request) -> dict[str, Any]:
        sess = session(sid)
        data = await body(request)

        def load():
            vol, ann = wire.scan_from_npz(data, max_array_bytes, name)
            check_voxels(vol.shape)
            return sess.study().add_scan(name, vol, ann)

        return await run_in_threadpool(load)

    @app.post(API + "/sessions/{sid}/cohort/train")
    async def cohort_train(sid: str, request: Request) -> dict[str, Any]:
        sess = session(sid)
        opts = await _json(request)
        return sess.study().start(opts.get("options") or {})

    @app.post(API + "/sessions/{sid}/cohort/{action}")
    async def cohort_control(sid: str, action: str) -> dict[str, Any]:
        sess = session(sid)
        if action not in ("pause", "resume", "stop"):
            raise HTTPException(404, f"unknown action {action!r}")
        getattr(sess.study(), action)()
        return status_json(sess.study().snapshot())

    @app.get(API + "/sessions/{sid}/cohort/events")
    async def cohort_events(sid: str) -> StreamingResponse:
        sess = session(sid)
        return StreamingResponse(_stream(sess, sess.study()), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get(API + "/sessions/{sid}/cohort/model")
    async def cohort_model(sid: str) -> FileResponse:
        sess = session(sid)
        path = await run_in_threadpool(sess.study().save_model, sess.folder / "cohort.safetensors")
        return FileResponse(path, media_type="application/octet-stream", filename="cohort.safetensors")

    @app.post(API + "/sessions/{sid}/{action}")
    async def control(sid: str, action: str) -> dict[str, Any]:
        sess = session(sid)
        if action not in ("pause", "resume", "stop"):
            raise HTTPException(404, f"unknown action {action!r}")
        getattr(sess.engine, action)()
        return status_json(sess.engine.snapshot())

    # ------------------------------------------------------------------------------- results
    @app.get(API + "/sessions/{sid}/events")
    async def events(sid: str) -> StreamingResponse:
        sess = session(sid)
        return StreamingResponse(_stream(sess, sess.engine), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get(API + "/sessions/{sid}/result")
    async def result(sid: str) -> Response:
        labels, unc = session(sid).engine.result()
        arrays = {"labels": labels} if unc is None else {"labels": labels, "uncertainty": unc}
        return Response(await run_in_threadpool(wire.to_npz, arrays), media_type=NPZ)

    @app.get(API + "/sessions/{sid}/model")
    async def model(sid: str) -> FileResponse:
        sess = session(sid)
        path = await run_in_threadpool(sess.engine.save_model, sess.folder / "model.safetensors")
        return FileResponse(path, media_type="application/octet-stream", filename="model.safetensors")

    return app


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return data


async def _stream(sess: Session, engine: Any) -> AsyncIterator[bytes]:
    """Status changes and prediction updates until the current training run ends.

    Each stream keeps its own :class:`~wire.UpdateEncoder`, so a reconnecting client first receives
    the whole prediction and then only the changed boxes.
    """
    enc = wire.UpdateEncoder()
    seen_version, seen_pred = -1, 0
    last_sent = time.monotonic()
    sess.streams += 1
    try:
        while True:
            snap = engine.snapshot()
            if snap.version != seen_version:
                seen_version = snap.version
                status = status_json(snap)
                if snap.prediction_version != seen_pred and snap.labels is not None:
                    seen_pred = snap.prediction_version
                    update = await run_in_threadpool(enc.encode, snap.labels, snap.uncertainty)
                    yield sse("prediction", {**status, "update": update})
                else:
                    yield sse("status", status)
                last_sent = time.monotonic()
                if snap.state in TERMINAL:
                    return
            elif time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
                sess.touch()
            await asyncio.sleep(POLL_SECONDS)
    finally:
        sess.streams -= 1
        sess.touch()
