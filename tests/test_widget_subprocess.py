"""The spawned-process helper that keeps GIL-heavy pseudo-labels off napari's thread (no Qt needed)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from napari_sparseseg.errors import AnnotationError
from napari_sparseseg.widget.subprocess_job import Cancelled, run_in_process


def _square(a: np.ndarray) -> tuple[np.ndarray, int]:
    return a * a, os.getpid()


def _fail() -> None:
    raise AnnotationError("no foreground marks")


def _sleep(s: float) -> None:
    time.sleep(s)


def _die() -> None:
    os._exit(3)


def _count(n: int, progress=None) -> int:
    for i in range(n):
        progress(i + 1, n)
    return os.getpid()


def test_progress_reaches_the_caller() -> None:
    seen: list[tuple[int, int]] = []
    pid = run_in_process(_count, 4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and pid != os.getpid()


def test_result_comes_back_from_another_process() -> None:
    out, pid = run_in_process(_square, np.arange(5))
    np.testing.assert_array_equal(out, np.arange(5) ** 2)
    assert pid != os.getpid()


def test_user_errors_keep_their_type_and_message() -> None:
    with pytest.raises(AnnotationError, match="no foreground marks"):
        run_in_process(_fail)


def test_cancel_terminates_the_child_quickly() -> None:
    t = time.perf_counter()
    with pytest.raises(Cancelled):
        run_in_process(_sleep, 60, should_stop=lambda: time.perf_counter() - t > 0.5)
    assert time.perf_counter() - t < 20


def test_a_dying_child_is_an_error_not_a_hang() -> None:
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_in_process(_die)
