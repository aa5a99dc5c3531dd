"""``CohortTrainer``: one 2D network learnt from the sparse marks of every marked scan of a study.

What it learns from: the marks (partial cross-entropy) and each scan's own pseudo-labels made from
those marks (confidence-weighted CE + Dice, SA-Net's threshold).  Dense labels are never an input.
What makes it more than its pseudo-labels:

* it sees every scan, so the per-scan walker's mistakes (which differ from scan to scan) average
  out; optionally it re-estimates each scan's targets where it and the scan's walker agree
  (``refresh_at``: self-training across scans; off by default, it lost on the validation split);
* its input is the image plus a prior (the pseudo-label probabilities), dropped to a uniform prior
  for half the crops (``prior_dropout``), so one network segments a new scan with no marks at all
  and uses the marks' prior when a scan has some;
* optionally DK-UXNet's mutual learning between two networks (``mutual``).

A generator of :class:`CohortEvent` like the per-scan Trainer: pause, resume and cancel are
thread-safe flags checked between steps; a resumable checkpoint is written to the work folder.
Under ``torchrun`` each process makes the pseudo-labels of its share of the scans and trains on
them; DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AnnotationError
from ..models.networks import NetworkSpec, build_network, default_spec
from ..training import augment as aug
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.config import cosine_lr
from ..training.losses import partial_ce, soft_dice, weighted_ce
from ..training.trainer import pick_device
from . import distributed as dist
from .config import CohortConfig, CohortEvent
from .data import CohortScan, ScanTensors, sample_batch
from .predict import predict_scan_probabilities
from .pseudo_cache import load_cached, pseudo_key, save_cached
from .resume import load_resume, restore, save_resume

MUTUAL_WIDTHS = (24, 48, 96, 192)


class CohortTrainer:
    """Train one network across the marked scans of a study (see the module docstring)."""

    def __init__(self, scans: Sequence[CohortScan], config: CohortConfig | None = None,
                 init: str | Path | None = None, workdir: str | Path | None = None, resume: bool = False) -> None:
        self.config = config or CohortConfig()
        dist.init_from_env()  # a no-op unless started by torchrun
        self.workdir = Path(workdir) if workdir is not None else None
        self._scans: list[CohortScan] = []
        self.classes: tuple[int, ...] = ()
        self.class_names: dict[int, str] = {}
        self.background_label = 0
        self.add_scans(scans)
        if not self._scans:
            raise AnnotationError("no scan of the study has marks: mark at least one scan before training")
        self.device = pick_device(dist.device_for_rank(self.config.device))
        torch.manual_seed(self.config.seed)
        self._rng = np.random.default_rng(self.config.seed + 1000 * dist.rank())
        self._gen = torch.Generator().manual_seed(self.config.seed + dist.rank())
        k = len(self.classes) + 1
        self.spec = default_spec(2, 1 + k, k, channels=tuple(self.config.channels))
        self.spec.prior_residual = bool(self.config.prior_residual)
        self.model = build_network(self.spec).to(self.device)
        self.model_b: torch.nn.Module | None = None
        if self.config.mutual:
            self.spec_b = default_spec(2, 1 + k, k, channels=MUTUAL_WIDTHS)
            self.spec_b.prior_residual = self.spec.prior_residual
            self.model_b = build_network(self.spec_b).to(self.device)
        self.step = 0
        self.elapsed_before = 0.0
        self.model_version = 0
        self.pretrained = False
        if init is not None:
            self._load_init(init)
        params = list(self.model.parameters()) + (list(self.model_b.parameters()) if self.model_b is not None else [])
        self.optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        self._lock = threading.RLock()
        self._pause = threading.Event()
        self._cancel = threading.Event()
        self._tensors: list[ScanTensors] = []
        self._wrapped: list[torch.nn.Module | None] = []
        self._refreshed: set[float] = set()
        self.history: list[dict[str, float]] = []
        if resume and self.workdir is not None:
            state = load_resume(self.workdir)
            if state is not None:
                self.step, self.elapsed_before, self.model_version = restore(self, state)

    # ----------------------------------------------------------------- scans
    def add_scans(self, scans: Sequence[CohortScan]) -> None:
        """Add (or replace, by name) marked scans; unmarked ones are ignored.  Earlier scans stay in
        the pool, so the model keeps learning them (replay) while it learns the new ones."""
        for s in scans:
            if not s.marked:
                continue
            ann = s.annotation
            assert ann is not None
            ann.validate(s.image.shape)
            if not self.classes:
                self.classes = tuple(int(c) for c in ann.classes)
                self.class_names = dict(ann.class_names)
                self.background_label = int(ann.background_label)
            elif tuple(ann.classes) != self.classes:
                raise AnnotationError(f"{s.name or 'a scan'} has classes {list(ann.classes)}, the study {list(self.classes)}")
            name = s.name or (s.image.name or f"scan{len(self._scans)}")
            self._scans = [x for x in self._scans if (x.name or x.image.name) != name]
            self._scans.append(CohortScan(s.image, ann, name, s.pseudo))
        if getattr(self, "_tensors", None):
            self._tensors = []  # rebuilt (with the new scans) at the next run

    @property
    def scans(self) -> list[CohortScan]:
        return list(self._scans)

    def _load_init(self, init: str | Path) -> None:
        state, meta = load_checkpoint(init)
        if [int(c) for c in meta.get("classes", [])] != list(self.classes):
            from ..errors import CheckpointError

            raise CheckpointError(f"{Path(init).name} was trained for classes {meta.get('classes')}, the study has {list(self.classes)}")
        self.spec = NetworkSpec.from_dict(meta["network"])
        self.model = build_network(self.spec).to(self.device)
        self.model.load_state_dict(state)
        self.model_version = int(meta.get("cohort", {}).get("version", 0))
        self.pretrained = True

    # -------------------------------------------------------------- controls
    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    # --------------------------------------------------------------- phases
    def _pseudo_labels(self) -> Iterator[CohortEvent]:
        """Pseudo-labels of this process's share of the scans (cached), as :class:`ScanTensors`."""
        cfg = self.config
        mine = dist.shard(self._scans)
        folder = self.workdir / "pseudo" if self.workdir is not None else None
        tensors = []
        for i, s in enumerate(mine):
            if self._cancel.is_set():
                return
            pseudo = s.pseudo
            if pseudo is None and cfg.pseudo_method != "none":
                ann = s.annotation
                assert ann is not None
                key = pseudo_key(s.image, ann, cfg.pseudo_method)
                pseudo = load_cached(folder, key, self.classes)
                if pseudo is None:
                    from ..pseudo import make_pseudo_labels

                    pseudo = make_pseudo_labels(s.image, ann, method=cfg.pseudo_method)
                    save_cached(folder, key, pseudo)
            scan = CohortScan(s.image, s.annotation, s.name, pseudo if cfg.pseudo_method != "none" else None)
            tensors.append(ScanTensors(scan, self.classes, cfg.threshold))
            yield CohortEvent("pseudo", i + 1, len(mine), scan=s.name, message=f"pseudo-labels {i + 1}/{len(mine)}")
        self._tensors = tensors

    def _refresh(self) -> None:
        """Self-training across scans: keep each scan's target where the network and the scan's own
        prior agree (geometric mean of the two probabilities, renormalised)."""
        for t in self._tensors:
            prior = t.prior_float()
            if prior is None:
                continue
            net = predict_scan_probabilities(self.model, t.image.float(), prior, self.device)
            fused = torch.sqrt(net.clamp_min(1e-6) * prior.clamp_min(1e-6))
            fused = fused / fused.sum(0, keepdim=True)
            t.set_pseudo(fused.numpy())

    # ------------------------------------------------------------------ step
    def train_step(self, lr: float) -> dict[str, float]:
        cfg = self.config
        k = len(self.classes) + 1
        b = sample_batch(self._tensors, k, tuple(cfg.patch), int(cfg.batch), cfg.prior_dropout, self._rng)
        x, m, p, w = b["x"], b["marks"], b["pseudo"], b["weight"]
        if cfg.augment:
            x, m, p, w = aug.geometric(x, m, p, w, 2, self._gen)
            x = aug.intensity(x, self._gen)
        x, m = x.to(self.device), m.to(self.device)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        losses: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=self.device)
        outs = []
        for tag, net in (("", self._wrapped[0]), ("b_", self._wrapped[1])):
            if net is None:
                continue
            net.train()
            out = net(x)
            outs.append(out)
            losses[tag + "marks"] = partial_ce(out, m)
            total = total + losses[tag + "marks"]
            if p is not None and w is not None and cfg.w_pseudo > 0:
                pd, wd = p.to(self.device), w.to(self.device)
                losses[tag + "pseudo"] = weighted_ce(out, pd, wd) + cfg.w_dice * soft_dice(out, pd, wd)
                total = total + cfg.w_pseudo * losses[tag + "pseudo"]
        if len(outs) == 2:  # mutual learning: each net learns the other's confident unmarked voxels
            from .mutual import mutual_loss

            losses["mutual"] = mutual_loss(outs[0], outs[1], m, cfg.threshold)
            total = total + cfg.w_mutual * losses["mutual"]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        res = {key: float(v.detach()) for key, v in losses.items()}
        res["total"] = float(total.detach())
        return res

    def _params(self) -> list[torch.nn.Parameter]:
        ps = list(self.model.parameters())
        if self.model_b is not None:
            ps += list(self.model_b.parameters())
        return ps

    # ------------------------------------------------------------------ loop
    def run(self) -> Iterator[CohortEvent]:
        """Pseudo-labels (cached), then training for the budget, yielding events."""
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self._cancel.clear()
        if not self._tensors:
            yield from self._pseudo_labels()
            if self._cancel.is_set():
                yield CohortEvent("cancelled", self.step, message="cancelled")
                return
        if not self._wrapped or self._wrapped[0] is None:
            # DistributedDataParallel broadcasts rank 0's weights and averages every gradient
            self._wrapped = [dist.wrap(self.model, self.device),
                             dist.wrap(self.model_b, self.device) if self.model_b is not None else None]
        budget = float(cfg.budget_seconds)
        scale = 0.3 if self.pretrained else 1.0
        t0 = time.perf_counter() - self.elapsed_before
        paused_total = 0.0
        last_ev = last_ck = -1e9
        start_step, start_elapsed = self.step, self.elapsed_before
        losses: dict[str, float] = {}
        while True:
            if self._pause.is_set() and not self._cancel.is_set():
                p0 = time.perf_counter()
                time.sleep(0.05)
                paused_total += time.perf_counter() - p0
                continue
            elapsed = time.perf_counter() - t0 - paused_total
            frac = elapsed / max(budget, 1e-6)
            if cfg.max_steps is not None:
                frac = max(frac, self.step / max(cfg.max_steps, 1)) if budget < 1e8 else self.step / max(cfg.max_steps, 1)
            stop = self._cancel.is_set()
            done = frac >= 1.0
            stop, done = dist.agree(stop), dist.agree(done)  # every process leaves the loop together
            if stop or done:
                for net in (self.model, self.model_b):
                    if net is not None:
                        dist.sync_buffers(net)  # every process ends with the same model
            if stop:
                self.elapsed_before = elapsed
                if self.workdir is not None and dist.is_main() and self.step > start_step:
                    save_resume(self, self.workdir)  # a cancelled run resumes where it stopped
                yield CohortEvent("cancelled", self.step, cfg.max_steps, elapsed, None, losses, "cancelled")
                return
            if done:
                self.elapsed_before = elapsed
                self.model_version += 1
                if self.workdir is not None and dist.is_main():
                    save_resume(self, self.workdir)
                yield CohortEvent("done", self.step, cfg.max_steps, elapsed, 0.0, losses, "done")
                return
            for r in cfg.refresh_at:
                if frac >= r and r not in self._refreshed:
                    self._refreshed.add(r)
                    self._refresh()
                    yield CohortEvent("refresh", self.step, cfg.max_steps, elapsed, None, losses,
                                      f"pseudo-labels re-estimated at {int(r * 100)} % of the budget")
            losses = self.train_step(cosine_lr(cfg.lr, frac, scale))
            self.history.append({"step": float(self.step), **losses})
            elapsed = time.perf_counter() - t0 - paused_total
            if elapsed - last_ev >= cfg.step_event_every_seconds:
                last_ev = elapsed
                eta = _eta(elapsed, budget, cfg.max_steps, self.step, start_step, start_elapsed)
                yield CohortEvent("step", self.step, cfg.max_steps, elapsed, eta, dict(losses))
            if self.workdir is not None and elapsed - last_ck >= cfg.checkpoint_every_seconds and self.step > start_step:
                last_ck = elapsed
                self.elapsed_before = elapsed
                if dist.is_main():
                    path = save_resume(self, self.workdir)
                    yield CohortEvent("checkpoint", self.step, cfg.max_steps, elapsed, None, dict(losses), str(path))

    # ----------------------------------------------------------- persistence
    def metadata(self) -> dict[str, Any]:
        """Checkpoint metadata the per-scan Trainer understands (``segment --init``) plus the study's."""
        first = self._scans[0].image
        return {
            "classes": list(self.classes),
            "class_names": {str(k): v for k, v in self.class_names.items()},
            "background_label": self.background_label,
            "network": self.spec.to_dict(),
            "pseudo_input": True,
            "spacing": list(first.spacing),
            "normalisation": {"method": "percentile_zscore", "percentiles": [0.5, 99.5]},
            "threshold": self.config.threshold,
            "steps": self.step,
            "cohort": {"version": self.model_version, "scans": [s.name for s in self._scans],
                       "config": self.config.to_dict(), "pseudo_method": self.config.pseudo_method},
        }

    def save(self, path: str | Path) -> Path:
        """The model (first network only) as a checkpoint ``Trainer(init=...)`` and CohortModel load."""
        return save_checkpoint(path, self.model.state_dict(), self.metadata())


def _eta(elapsed: float, budget: float, max_steps: int | None, step: int, start_step: int,
         start_elapsed: float) -> float | None:
    """Seconds left: the time budget's rest, or the steps left at this run's rate, whichever ends first."""
    left = [max(budget - elapsed, 0.0)] if budget < 1e8 else []
    if max_steps is not None and step > start_step:
        left.append((elapsed - start_elapsed) / (step - start_step) * max(max_steps - step, 0))
    return min(left) if left else None

