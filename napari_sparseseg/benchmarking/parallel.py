"""Run case jobs one after another in this process, or in parallel spawned worker processes.

Why processes (not threads): training and the random walker hold the GIL for long stretches, and
each case is independent.  Why ``spawn``: a forked child inherits the parent's OpenMP/CUDA state,
which deadlocks or fails on CUDA; a spawned child starts clean.  Each worker gets
``max(1, cores // workers)`` torch threads and ``OMP_WAIT_POLICY=PASSIVE`` (set in the environment
*before* the child imports torch), so N workers do not spin on each other's cores.

``time_limit`` stops *starting* cases after that many seconds; cases already running finish, so
every row written is a complete, honest measurement and the report says how many cases each row of
the table holds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from .contenders import get_contender

OnDone = Callable[[Any, list, Any], None]
#: ``run_job(job, spec, root, active, log=...) -> (rows, active record or None)``
RunJob = Callable[..., tuple[list, Any]]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or available_cores()) // max(1, workers))


def _init_worker(threads: int) -> None:
    """Runs first in each spawned worker: thread counts before any heavy import."""
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _worker_log(msg: str) -> None:
    print(f"[worker {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def _run_in_worker(run_job: RunJob, job: Any, spec: Any, root: Path, active: Any) -> tuple[list, Any]:
    return run_job(job, spec, root, active, log=_worker_log)


def _error_rows(job: Any, spec: Any, exc: BaseException) -> list[dict[str, Any]]:
    """A case that failed as a whole (e.g. unreadable file, dead worker): one error row per method."""
    msg = f"{type(exc).__name__}: {exc}"
    return [{"dataset": job.dataset, "case": job.name, "setting": s, "method": m, "kind": get_contender(m).kind,
             "seed": spec.seed, "error": msg} for s, ms in job.items for m in ms]


def run_jobs(jobs: list, spec: Any, root: Path, active: Any, on_done: OnDone, *, run_job: RunJob,
             workers: int = 1, time_limit: float | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``jobs`` (:class:`~napari_sparseseg.benchmarking.runner.CaseJob`) with ``run_job`` (a module-level
    function, so spawned workers can import it: the runner passes its ``run_case_job``; this module never
    imports the runner); ``on_done(job, rows, record)`` is called in this process as each finishes.
    Returns what ran and what the time limit skipped."""
    t0 = time.perf_counter()
    workers = max(1, int(workers))
    threads = spec.budget.threads if workers == 1 else threads_per_worker(workers)
    spec = replace(spec, budget=replace(spec.budget, threads=threads))
    n_rows = sum(j.n_rows for j in jobs)
    rows_done = 0
    ran: list[str] = []
    skipped: list[str] = []

    def out_of_time() -> bool:
        return time_limit is not None and time.perf_counter() - t0 >= time_limit

    def finished(job: Any, rows: list, record: Any) -> None:
        nonlocal rows_done
        on_done(job, rows, record)
        rows_done += len(rows)
        ran.append(f"{job.dataset}/{job.name}")
        log(f"case {len(ran)}/{len(jobs)} done: {job.dataset}/{job.name} ({rows_done}/{n_rows} rows, "
            f"{time.perf_counter() - t0:.0f} s)")

    if workers == 1:
        for job in jobs:
            if out_of_time():
                skipped.append(f"{job.dataset}/{job.name}")
                continue
            try:
                rows, record = run_job(job, spec, root, active, log=log)
            except Exception as exc:  # a broken case must not stop the suite
                rows, record = _error_rows(job, spec, exc), None
            finished(job, rows, record)
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by the spawned children at start-up
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MKL_NUM_THREADS"] = str(threads)
        import multiprocessing as mp

        log(f"{workers} worker processes x {threads} torch threads, {len(jobs)} case(s)")
        pending = list(jobs)
        running: dict[Future, Any] = {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            while pending or running:
                while pending and len(running) < workers and not out_of_time():
                    job = pending.pop(0)
                    running[pool.submit(_run_in_worker, run_job, job, spec, Path(root), active)] = job
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    job = running.pop(fut)
                    try:
                        rows, record = fut.result()
                    except Exception as exc:
                        rows, record = _error_rows(job, spec, exc), None
                    finished(job, rows, record)
            skipped = [f"{j.dataset}/{j.name}" for j in pending]
    if skipped:
        log(f"time limit {time_limit:.0f} s reached: {len(skipped)} case(s) not started")
    return {"cases_planned": len(jobs), "cases_run": len(ran), "cases_skipped": skipped,
            "stopped_by_time_limit": bool(skipped), "time_limit_s": time_limit, "workers": workers,
            "threads_per_worker": threads, "seconds": time.perf_counter() - t0}
