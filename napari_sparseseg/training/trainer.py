"""The weakly supervised trainer: a generator of progress events that can pause, cancel and warm-start.

Why a generator: the same loop drives the CLI (progress bar), the benchmark and the napari worker
(thread or subprocess); whoever iterates decides where events go.  Control calls (:meth:`pause`,
:meth:`cancel`, :meth:`update_annotation`) are thread-safe flags checked between steps, and a step
takes well under a second, so cancel is honoured within one second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..annotations.sparse import IGNORE_INDEX, SparseAnnotation
from ..errors import AnnotationError, CheckpointError, SparsesegError
from ..io.volume import Volume
from ..models.networks import NetworkSpec, build_network, choose_network, default_spec
from . import augment as aug
from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .config import TrainConfig, TrainEvent, changed_box, cosine_lr
from .data import TrainingData, build_training_data, channel_to_class, crop_batch, percentile_zscore
from .inference import predict_outputs, predict_probabilities
from .losses import consistency, partial_ce, soft_dice, weighted_ce


def pick_device(requested: str = "auto") -> torch.device:
    """``"auto"``: CUDA if present, then Apple MPS, else the CPU.

    A named device is checked here, once: a misspelt one, or CUDA/MPS on a machine without it, is a
    one-line :class:`SparsesegError`, not a torch traceback in the middle of training.
    """
    if requested != "auto":
        try:
            dev = torch.device(requested)
        except (RuntimeError, ValueError, TypeError):
            raise SparsesegError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if n == 0 or (dev.index is not None and dev.index >= n):
                raise SparsesegError(f"device {requested!r} is not available here ({n} CUDA device(s)); use auto or cpu")
        elif dev.type == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise SparsesegError(f"device {requested!r} is not available here; use auto or cpu")
        elif dev.type != "cpu":
            raise SparsesegError(f"device {requested!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Trainer:
    """Train (or fine-tune) a U-Net on one volume from marks + pseudo-labels, streaming predictions."""

    def __init__(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        config: TrainConfig | None = None,
        pseudo: Any | None = None,
        init: str | Path | dict | None = None,
    ) -> None:
        self.image = image
        self.config = config or TrainConfig()
        annotation.validate(image.shape)
        self.annotation = annotation
        self.classes = tuple(annotation.classes)
        self.pseudo = pseudo
        self.device = pick_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self._rng = np.random.default_rng(self.config.seed)
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self._norm_image, self.normalisation = percentile_zscore(image.array)
        use_prior = self.config.pseudo_input and pseudo is not None
        in_ch = 1 + (len(self.classes) + 1 if use_prior else 0)
        init_state, init_meta = self._resolve_init(init)
        if init_meta is not None:
            check_compatible(init_meta, self.classes, in_ch, source=str(init_meta.get("_source", "checkpoint")))
            self.spec = NetworkSpec.from_dict(init_meta["network"])
        else:
            dims = choose_network(image.spacing, image.shape, self.config.network)
            self.spec = default_spec(dims, in_ch, len(self.classes) + 1, channels=self.config.channels)
            self.spec.prior_residual = bool(use_prior and self.config.prior_residual)
        self.use_prior = use_prior
        self.pretrained = init_state is not None  # fine-tuning: start the cosine at the warm scale
        self.model = build_network(self.spec).to(self.device)
        if init_state is not None:
            try:
                self.model.load_state_dict(init_state)
            except RuntimeError as exc:
                # torch lists every mismatch on its own line: keep them all, on one line
                detail = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()) or str(exc)
                raise CheckpointError(f"checkpoint weights do not fit {self.spec.name}: {detail}") from None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.step = 0
        self._lock = threading.RLock()
        self._pause = threading.Event()
        self._cancel = threading.Event()
        self._pending: tuple[SparseAnnotation, Any] | None = None
        self._last_labels: np.ndarray | None = None
        self._data = self._build_data(annotation, pseudo)
        # the input tensor's first channel *is* the normalised image: keep one copy, not two
        # (rebuilds read it before writing a new tensor); 315 MB on a 512 x 512 x 300 scan
        self._norm_image = self._data.x[0].numpy()

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _resolve_init(init: str | Path | dict | None) -> tuple[dict | None, dict | None]:
        if init is None:
            return None, None
        if isinstance(init, dict):
            if "state_dict" in init and "meta" in init:
                return init["state_dict"], dict(init["meta"])
            raise CheckpointError("init dict must hold 'state_dict' and 'meta' (as returned by load_checkpoint)")
        state, meta = load_checkpoint(init)
        meta["_source"] = Path(init).name
        return state, meta

    @property
    def patch(self) -> tuple[int, ...]:
        if self.config.patch is not None:
            return tuple(self.config.patch)
        return (96, 96) if self.spec.dims == 2 else (24, 32, 32)

    @property
    def batch(self) -> int:
        if self.config.batch is not None:
            return int(self.config.batch)
        return 8 if self.spec.dims == 2 else 4

    def _build_data(self, ann: SparseAnnotation, pseudo: Any | None) -> TrainingData:
        return build_training_data(self._norm_image, ann, pseudo, self.use_prior, self.config.threshold, self._rng,
                                   compact=True)

    # --------------------------------------------------------------- controls
    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    def update_annotation(self, ann: SparseAnnotation, pseudo: Any | None = None, *, restart: bool = True) -> None:
        """New marks (and optionally new pseudo-labels): training continues from the current weights.

        ``restart=False`` swaps the data without restarting the budget and the learning-rate cosine:
        for better pseudo-labels of the *same* marks arriving while training runs (SAM-fused slices
        folded in over the walker's, ``pseudo.progressive``), which is not new work for the user.
        """
        ann.validate(self.image.shape)
        if tuple(ann.classes) != self.classes:
            raise AnnotationError(f"classes changed from {list(self.classes)} to {list(ann.classes)}; start a new model")
        with self._lock:
            restart = bool(restart or (self._pending is not None and self._pending[2]))
            self._pending = (ann, pseudo if pseudo is not None else self.pseudo, restart)

    @property
    def has_pending_update(self) -> bool:
        """True while marks/pseudo-labels given to :meth:`update_annotation` are not trained on yet."""
        with self._lock:
            return self._pending is not None

    def _apply_pending(self) -> bool:
        """Swap in pending marks/pseudo-labels; True when the budget and schedule should restart."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return False
        ann, pseudo, restart = pending
        data = self._build_data(ann, pseudo)
        with self._lock:
            self.annotation, self.pseudo, self._data = ann, pseudo, data
        return restart

    # ------------------------------------------------------------------ steps
    def _lr_at(self, frac: float, scale: float = 1.0) -> float:
        """Cosine from ``lr * scale`` down to a tenth of it over the (time) budget."""
        return cosine_lr(self.config.lr, frac, scale)

    def train_step(self, lr: float) -> dict[str, float]:
        """One optimisation step on a batch of crops; returns the loss terms."""
        cfg = self.config
        dims = self.spec.dims
        with self._lock:
            data = self._data
            x, m, p, w = crop_batch(data, self.patch, self.batch, dims, self._rng)
            if cfg.augment:
                x, m, p, w = aug.geometric(x, m, p, w, dims, self._gen)
            xa = aug.intensity(x, self._gen) if cfg.augment else x
            use_cons = cfg.w_consistency > 0
            if use_cons:
                xb = aug.intensity(x, self._gen)
                xin = torch.cat([xa, xb]).to(self.device)
            else:
                xin = xa.to(self.device)
            m = m.to(self.device)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            self.model.train()
            out = self.model(xin)
            la = out[: x.shape[0]]
            losses: dict[str, torch.Tensor] = {"marks": partial_ce(la, m)}
            total = cfg.w_marks * losses["marks"]
            if p is not None and w is not None and cfg.w_pseudo > 0:
                p, w = p.to(self.device), w.to(self.device)
                losses["pseudo_ce"] = weighted_ce(la, p, w)
                losses["pseudo_dice"] = soft_dice(la, p, w)
                total = total + cfg.w_pseudo * (losses["pseudo_ce"] + cfg.w_dice * losses["pseudo_dice"])
            if use_cons:
                losses["consistency"] = consistency(la, out[x.shape[0]:])
                total = total + cfg.w_consistency * losses["consistency"]
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            self.step += 1
        res = {k: float(v.detach()) for k, v in losses.items()}
        res["total"] = float(total.detach())
        return res

    # -------------------------------------------------------------- inference
    def predict_proba(self, should_stop: Any = None) -> torch.Tensor | None:
        """Softmax probabilities ``(K, Z, Y, X)`` on the image grid (None if stopped half-way)."""
        with self._lock:
            return predict_probabilities(self.model, self._data.x, self.spec.dims, self.device, self.config.sw_roi, should_stop)

    def predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Label map (annotation's class ids, 0 = background) and uncertainty in [0, 1]."""
        out = self._predict_outputs()
        assert out is not None
        return out

    def _predict_outputs(self, should_stop: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Labels + uncertainty, chunk by chunk (no full-size probability volume)."""
        with self._lock:
            return predict_outputs(self.model, self._data.x, self.spec.dims, self.device,
                                   channel_to_class(self.classes), self.config.sw_roi, should_stop)

    # ------------------------------------------------------------------- loop
    def run(self) -> Iterator[TrainEvent]:
        """Train for the budget, yielding events.  Calling it again continues from the current weights."""
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self._cancel.clear()
        warm = self.step > 0
        budget = float(cfg.warm_budget_seconds or cfg.budget_seconds / 2) if warm else float(cfg.budget_seconds)
        scale = float(cfg.warm_lr_scale) if warm or self.pretrained else 1.0
        clock = _PausableClock()
        run_start_step = self.step
        sched_t0, sched_step0 = 0.0, self.step  # the cosine restarts (at the warm scale) on new marks
        last_step_ev = -1e9
        next_preview = float(cfg.first_preview_seconds)
        lr = self._lr_at(0.0, scale)
        losses: dict[str, float] = {}
        while True:
            if self._cancel.is_set():
                yield TrainEvent("cancelled", self.step, clock.elapsed(), None, lr, losses, message="cancelled")
                return
            if self._pause.is_set():
                clock.pause()
                time.sleep(0.05)
                continue
            clock.resume()
            if self._apply_pending():
                # new marks or pseudo-labels get at least the warm budget, but never cut the time the
                # user gave (complete SAM pseudo-labels 4 s into a 45 s run used to end it at 26 s)
                budget = max(budget, clock.elapsed() + float(cfg.warm_budget_seconds or cfg.budget_seconds / 2))
                next_preview = clock.elapsed() + float(cfg.first_preview_seconds)
                sched_t0, sched_step0, scale = clock.elapsed(), self.step, float(cfg.warm_lr_scale)
            elapsed = clock.elapsed()
            done = elapsed >= budget or (cfg.max_steps is not None and self.step - run_start_step >= cfg.max_steps)
            if done:
                ev = self._prediction_event("done", clock, budget, lr, losses)
                if ev is None:  # cancelled during the final prediction
                    yield TrainEvent("cancelled", self.step, clock.elapsed(), None, lr, losses, message="cancelled")
                else:
                    yield ev
                return
            frac = (elapsed - sched_t0) / max(budget - sched_t0, 1e-6)
            if cfg.max_steps is not None:  # step-based schedule: same seed, same result
                frac = (self.step - sched_step0) / max(cfg.max_steps, 1)
            lr = self._lr_at(frac, scale)
            losses = self.train_step(lr)
            elapsed = clock.elapsed()
            if elapsed - last_step_ev >= cfg.step_event_every_seconds:
                last_step_ev = elapsed
                yield TrainEvent("step", self.step, elapsed, max(budget - elapsed, 0.0), lr, dict(losses))
            if elapsed >= next_preview:
                ev = self._prediction_event("prediction", clock, budget, lr, losses)
                next_preview = clock.elapsed() + float(cfg.preview_every_seconds)
                if ev is not None:
                    yield ev

    def _prediction_event(self, kind: str, clock: _PausableClock, budget: float, lr: float, losses: dict[str, float]) -> TrainEvent | None:
        outs = self._predict_outputs(should_stop=self._cancel.is_set)
        if outs is None:
            return None
        labels, unc = outs
        changed = changed_box(self._last_labels, labels)
        self._last_labels = labels
        el = clock.elapsed()
        return TrainEvent(kind, self.step, el, max(budget - el, 0.0), lr, dict(losses), labels, unc, changed)

    # -------------------------------------------------------------- persistence
    def metadata(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "class_names": {str(k): v for k, v in self.annotation.class_names.items()},
            "background_label": self.annotation.background_label,
            "network": self.spec.to_dict(),
            "pseudo_input": self.use_prior,
            "spacing": list(self.image.spacing),
            "normalisation": {k: self.normalisation[k] for k in ("method", "percentiles")},
            "threshold": self.config.threshold,
            "steps": self.step,
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (safetensors + JSON metadata) that ``init=`` accepts."""
        with self._lock:
            return save_checkpoint(path, self.model.state_dict(), self.metadata())


class _PausableClock:
    """Wall time that stops while paused (the budget counts training, not waiting)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._paused_at: float | None = None
        self._paused_total = 0.0

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = time.perf_counter()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_total += time.perf_counter() - self._paused_at
            self._paused_at = None

    def elapsed(self) -> float:
        now = self._paused_at if self._paused_at is not None else time.perf_counter()
        return now - self._t0 - self._paused_total




__all__ = ["Trainer", "TrainConfig", "TrainEvent", "pick_device", "IGNORE_INDEX"]
