"""Drive a :class:`~napari_sparseseg.cohort.CohortTrainer` from a terminal: progress bars, ETA, Ctrl-C.

Shared by ``sparseseg train`` and ``sparseseg project train``.  Why a SIGINT handler instead of catching
``KeyboardInterrupt``: the interrupt would fire inside the trainer's generator (mid-step, maybe
mid-checkpoint) and close it; asking the trainer to cancel lets it finish the step, write its
resumable checkpoint and yield ``"cancelled"``, so the weights learnt so far are saved.  A second
Ctrl-C interrupts at once (the default behaviour).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def cancel_on_sigint(cancel: Callable[[], None], say: Callable[[str], None]) -> Iterator[list[bool]]:
    """While active, the first Ctrl-C calls ``cancel()``; the second raises ``KeyboardInterrupt``.

    Yields a one-item list that turns ``[True]`` once Ctrl-C was pressed.
    """
    pressed = [False]
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield pressed
        return

    def handler(signum: int, frame: Any) -> None:
        if pressed[0]:
            raise KeyboardInterrupt
        pressed[0] = True
        say("Ctrl-C: stopping after this step and saving (press Ctrl-C again to abort without saving)")
        cancel()

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, old)


def _fmt_eta(eta: float | None, budget: float | None = None) -> str:
    if eta is None or (budget is not None and eta > 10 * budget):  # the first steps' estimate is noise
        return "ETA ?"
    eta = max(0.0, float(eta))
    return f"ETA {int(eta // 60)}:{int(eta % 60):02d}" if eta >= 60 else f"ETA {eta:.0f} s"


def drive(trainer: Any, *, budget_seconds: float, quiet: bool, say: Callable[[str], None],
          desc: str = "training") -> Any:
    """Run ``trainer.run()`` to its end with progress bars; returns the last event ("done" or "cancelled").

    Two bars: pseudo-labels (scans done of all scans), then training (elapsed of the budget, with the
    step, the loss and the trainer's own ETA).
    """
    from tqdm import tqdm

    bars: dict[str, Any] = {}
    last = None

    def bar(kind: str, total: float, unit: str, label: str) -> Any:
        if quiet:
            return None
        if kind not in bars:
            for other in list(bars.values()):
                other.close()
            bars.clear()
            bars[kind] = tqdm(total=total, unit=unit, desc=label, file=sys.stderr, leave=True,
                              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} " + unit + " {postfix}")
        return bars[kind]

    with cancel_on_sigint(trainer.cancel, say):
        try:
            for ev in trainer.run():
                last = ev
                if ev.kind == "pseudo":
                    b = bar("pseudo", ev.total_steps or 1, "scans", "pseudo-labels")
                    if b is not None:
                        b.n = ev.step
                        b.set_postfix_str(ev.scan, refresh=True)
                elif ev.kind in ("step", "checkpoint", "done", "cancelled"):
                    b = bar("train", max(1, round(budget_seconds)), "s", desc)
                    if b is not None:
                        b.n = min(round(ev.elapsed), b.total)
                        loss = ev.losses.get("total", ev.losses.get("loss")) if ev.losses else None
                        post = f"step {ev.step}" + (f" loss {loss:.3f}" if loss is not None else "")
                        b.set_postfix_str(f"{post} {_fmt_eta(ev.eta, budget_seconds)}", refresh=True)
                if ev.kind in ("done", "cancelled"):
                    break
        finally:
            for b in bars.values():
                b.close()
    return last
