"""The engine's default: one U-Net (2D or 3D from the spacing) on marks + confident pseudo-labels.

This is :class:`~napari_sparseseg.training.Trainer` run to the end of its budget (SA-Net's MIX of
marks and pseudo-labels above ``t``, with a prior-residual head that starts at the pseudo-labels).
The seed-paper methods are measured against it.
"""

from __future__ import annotations

from ..errors import SparsesegError
from .base import MethodContext, MethodOutput, register


@register("default", paper="engine", description="one U-Net on marks + confident pseudo-labels (the Trainer)")
def run_default(ctx: MethodContext) -> MethodOutput:
    from ..training import Trainer

    trainer = Trainer(ctx.image, ctx.annotation, ctx.config, pseudo=ctx.pseudo)
    final = None
    for ev in trainer.run():
        if ev.kind == "step":
            ctx.report(ev.step, ev.losses)
            if ctx.should_stop is not None and ctx.should_stop():
                trainer.cancel()
        elif ev.kind in ("done", "cancelled", "error"):
            final = ev
    if final is None or final.kind != "done" or final.prediction is None:
        raise SparsesegError(f"training ended with {getattr(final, 'kind', 'nothing')}: {getattr(final, 'message', '')}")
    return MethodOutput(final.prediction, final.uncertainty, {"steps": trainer.step, "network": trainer.spec.name})
