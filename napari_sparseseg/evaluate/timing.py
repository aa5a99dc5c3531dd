"""Wall-clock and peak-memory helpers for benchmarks (``bench/``) and progress reports.

Why a sampler thread: ``resource.getrusage(...).ru_maxrss`` is the peak of the *whole process
lifetime*, so it cannot say what one step cost once a bigger step has run.  :class:`PeakMemory`
samples the resident set size (psutil) every few milliseconds while its block runs and reports the
peak above the RSS at entry; short allocation spikes between two samples can be missed, so the
lifetime ``ru_maxrss`` is reported beside it.  Where CUDA is in use, torch's own peak counter is
exact and is reported too.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .._optional import require


def _process() -> Any:
    """This process as a ``psutil.Process`` (psutil comes with the ``bench`` extra)."""
    return require("psutil", "bench", "measuring memory").Process(os.getpid())


@dataclass
class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``.  Reusable; ``t.laps`` keeps every run."""

    seconds: float = 0.0
    laps: list[float] = field(default_factory=list)
    _start: float = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._start
        self.laps.append(self.seconds)

    @property
    def total(self) -> float:
        return float(sum(self.laps))


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return int(_process().memory_info().rss)


def max_rss_bytes() -> int:
    """Lifetime peak RSS of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return int(_process().memory_info().peak_wset)
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _torch_cuda() -> Any:
    """The torch module if it is already imported and CUDA is usable (never imports torch itself)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch
    return None


class PeakMemory:
    """``with PeakMemory() as m: ...``; then ``m.peak_rss_bytes``, ``m.delta_rss_bytes``, ``m.cuda_peak_bytes``.

    Args:
        interval: sampling period in seconds.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = float(interval)
        self.start_rss_bytes = 0
        self.peak_rss_bytes = 0
        self.cuda_peak_bytes: int | None = None
        self.lifetime_max_rss_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = _process()

    @property
    def delta_rss_bytes(self) -> int:
        """Peak RSS during the block minus the RSS at entry (what the block itself added)."""
        return max(0, self.peak_rss_bytes - self.start_rss_bytes)

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            if rss > self.peak_rss_bytes:
                self.peak_rss_bytes = rss
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start_rss_bytes = self.peak_rss_bytes = self._proc.memory_info().rss
        torch = _torch_cuda()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="sparseseg-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss_bytes = max(self.peak_rss_bytes, self._proc.memory_info().rss)
        self.lifetime_max_rss_bytes = max_rss_bytes()
        torch = _torch_cuda()
        if torch is not None:
            self.cuda_peak_bytes = int(torch.cuda.max_memory_allocated())

    def as_dict(self) -> dict[str, float | None]:
        """MiB figures for JSON reports."""
        mib = 1024.0**2
        return {
            "peak_rss_mib": self.peak_rss_bytes / mib,
            "delta_rss_mib": self.delta_rss_bytes / mib,
            "lifetime_max_rss_mib": self.lifetime_max_rss_bytes / mib,
            "cuda_peak_mib": None if self.cuda_peak_bytes is None else self.cuda_peak_bytes / mib,
        }
