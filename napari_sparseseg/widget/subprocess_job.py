"""Run one heavy pure-Python/scipy computation in a spawned process, cancellably (no Qt).

Why: the random-walker pseudo-labels spend most of their time in scipy code that holds the GIL, so in
a thread they starve napari's event loop (bench/results/widget/widget_results.md measured stalls of ~200 ms, over a
thousand above 50 ms, on an ACDC volume).  torch training releases the GIL and stays in a thread.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable
from typing import Any

from ..loop.background import (
    Cancelled,  # one "stopped on request" for every background run
)


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict, with_progress: bool = False) -> None:
    if with_progress:  # ``fn(..., progress=cb)``: each cb(done, total) becomes a message to the parent
        kwargs = {**kwargs, "progress": lambda done, total: conn.send(("progress", (int(done), int(total))))}
    try:
        conn.send((True, fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        try:
            conn.send((False, exc))
        except Exception:  # unpicklable exception: send its text
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")))
    finally:
        conn.close()


def run_in_process(fn: Callable[..., Any], *args: Any, should_stop: Callable[[], bool] | None = None,
                   poll_s: float = 0.1, progress: Callable[[int, int], None] | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh spawned process; its exception is re-raised here.

    With ``progress``, ``fn`` is called with a ``progress=`` keyword of its own whose ``(done, total)``
    calls reach ``progress`` here, in the calling thread.

    ``should_stop()`` is checked every ``poll_s``; when it returns True the child is terminated and
    :class:`Cancelled` is raised.  A child that dies without answering raises RuntimeError.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs, progress is not None), name="sparseseg-job",
                       daemon=True)
    proc.start()
    child.close()
    try:
        while True:
            if parent.poll(poll_s):
                try:
                    ok, value = parent.recv()
                except EOFError:
                    proc.join(5)
                    raise RuntimeError(f"the background process ended without a result (exit code {proc.exitcode})") from None
                if ok == "progress":
                    if progress is not None:
                        progress(*value)
                    continue
                if ok:
                    return value
                raise value
            if should_stop is not None and should_stop():
                raise Cancelled()
            if not proc.is_alive() and not parent.poll(0):
                proc.join(5)
                raise RuntimeError(f"the background process died (exit code {proc.exitcode})")
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        parent.close()
