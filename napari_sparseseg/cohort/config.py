"""Settings of a cohort training run and the events it yields (the contract the CLI, the widget and
the project mode code against)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CohortConfig:
    """One network learnt from the sparse marks of many scans.

    Attributes:
        budget_seconds: training wall time (paused time not counted); ``max_steps`` stops earlier.
            Pseudo-labels are made before the clock starts and are cached in the work folder.
        pseudo_method: pseudo-label method per scan (``"random-walker"``: ~2 s per ACDC volume on
            one core; ``"fusion"`` adds LiteMedSAM, SA-Net's pseudo-labels, ~1 min per volume on a
            CPU); ``"none"`` trains on the marks alone.
        threshold: pseudo-label voxels below this confidence are ignored (SA-Net's ``t``).
        w_pseudo: weight of the confidence-weighted pseudo-label CE + Dice (the marks weigh 1).
        prior_dropout: probability that a training crop sees a uniform prior instead of its
            pseudo-label probabilities.  Why: at run time a new scan may have no marks at all (no
            prior); the same network must segment it from the image alone and still use a prior
            when one exists.
        refresh_at: fractions of the budget at which every training scan's pseudo-labels are
            re-estimated by the cohort network (self-training across scans): the network has seen
            every scan, so where it and the scan's own walker agree the target is kept, where they
            disagree the voxel is dropped.  Empty = off, the default: on the ACDC validation split it
            cost 0.05 Dice without marks for +0.007 with them (bench/results/study).
        prior_residual: add the prior's log-probabilities to the network's output (the per-scan
            trainer's default): with a scan's marks the untrained network already predicts its
            pseudo-labels and learns corrections; with the uniform prior it changes nothing.
        mutual: DK-UXNet's mutual learning: a second network of another width learns beside the
            first; each is also taught by the other's confident predictions on unmarked voxels.
        patch, batch: 2D crop size and crops per step (per process under torchrun).
        channels: U-Net widths of the (first) network.
        checkpoint_every_seconds: how often the resumable checkpoint is written to the work folder.
    """

    budget_seconds: float = 1800.0
    max_steps: int | None = None
    device: str = "auto"
    seed: int = 0
    threads: int | None = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pseudo_method: str = "random-walker"
    threshold: float = 0.6
    w_pseudo: float = 1.0
    w_dice: float = 0.5
    prior_dropout: float = 0.5
    refresh_at: tuple[float, ...] = ()
    prior_residual: bool = False
    mutual: bool = False
    w_mutual: float = 0.5
    patch: tuple[int, int] = (128, 128)
    batch: int = 16
    channels: tuple[int, ...] = (16, 32, 64, 128)
    augment: bool = True
    checkpoint_every_seconds: float = 60.0
    step_event_every_seconds: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("refresh_at", "patch", "channels"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CohortConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("refresh_at", "patch", "channels"):
            if k in known and known[k] is not None:
                known[k] = tuple(known[k])
        return cls(**known)


@dataclass
class CohortEvent:
    """One progress report of :meth:`CohortTrainer.run`.

    ``kind``: ``"pseudo"`` (pseudo-labels of ``scan`` ready; ``step`` = scans done, ``total_steps``
    = scans), ``"refresh"`` (pseudo-labels re-estimated by the network), ``"step"`` (losses),
    ``"checkpoint"`` (resumable checkpoint written; ``message`` = its path), ``"done"``,
    ``"cancelled"``.
    """

    kind: str
    step: int = 0
    total_steps: int | None = None
    elapsed: float = 0.0
    eta: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    message: str = ""
    scan: str = ""
