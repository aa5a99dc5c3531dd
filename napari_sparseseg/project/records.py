"""What a project remembers, as plain records that round-trip through ``project.json``.

Why plain dataclasses and a hand-written ``to_json``/``from_json``: the file is the contract between the
CLI and the widget (and the user's own scripts), so every key is spelt out here, unknown keys from a
newer minor version are kept rather than dropped, and a wrong type is a one-line :class:`ProjectError`
instead of a ``KeyError`` deep in a panel.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from ..errors import SparsesegError

PROJECT_FORMAT = "napari-sparseseg project"
PROJECT_VERSION = 1
PROJECT_FILE = "project.json"

#: a scan's life: no marks yet -> marks drawn -> prediction checked by a person -> written out
STATUSES: tuple[str, ...] = ("unmarked", "marked", "reviewed", "exported")


class ProjectError(SparsesegError):
    """A project folder or ``project.json`` that cannot be used, or a request it cannot satisfy."""


def now_iso() -> str:
    """UTC timestamp, second resolution, ISO 8601 (sortable as text)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass
class ScanRecord:
    """One scan of the project.

    Attributes:
        id: short unique name (the image's file stem); names the files the project writes for it.
        path: where the image lies, relative to the project folder when inside it, else absolute.
        status: one of :data:`STATUSES`.
        marks: the sparse marks file (relative to the project folder, ``annotations/<id>.nii.gz``) or None.
        prediction / uncertainty: the latest prediction files (relative) or None.
        prediction_model_version: the project's model version that made the prediction (None = per-scan run).
        mean_uncertainty: mean predictive uncertainty over the volume, in [0, 1] (Dice-free quality).
        foreground_uncertainty: mean uncertainty near the predicted structures (the background's easy
            voxels dilute the plain mean of a small structure to almost nothing).
        features: a cheap image descriptor (intensity histogram + shape), cached for the scan-level
            active learning's diversity term.
        added / updated: timestamps (ISO 8601, UTC).
        extra: keys this version does not know, kept so a newer file round-trips unchanged.
    """

    id: str
    path: str
    status: str = "unmarked"
    marks: str | None = None
    prediction: str | None = None
    uncertainty: str | None = None
    prediction_model_version: int | None = None
    mean_uncertainty: float | None = None
    foreground_uncertainty: float | None = None
    features: list[float] | None = None
    added: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("id", "path", "status", "marks", "prediction", "uncertainty", "prediction_model_version",
             "mean_uncertainty", "foreground_uncertainty", "features", "added", "updated")

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self._KEYS}
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: Any) -> ScanRecord:
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("path"), str):
            raise ProjectError("a scan entry needs a text 'id' and 'path'")
        status = str(d.get("status", "unmarked"))
        if status not in STATUSES:
            raise ProjectError(f"scan {d['id']!r}: unknown status {status!r} (one of {', '.join(STATUSES)})")
        feats = d.get("features")
        return cls(
            id=d["id"], path=d["path"], status=status, marks=_opt_str(d.get("marks")),
            prediction=_opt_str(d.get("prediction")), uncertainty=_opt_str(d.get("uncertainty")),
            prediction_model_version=_opt_int(d.get("prediction_model_version")),
            mean_uncertainty=_opt_float(d.get("mean_uncertainty")),
            foreground_uncertainty=_opt_float(d.get("foreground_uncertainty")),
            features=None if feats is None else [float(v) for v in feats],
            added=str(d.get("added") or now_iso()), updated=str(d.get("updated") or now_iso()),
            extra={k: v for k, v in d.items() if k not in cls._KEYS},
        )


@dataclass
class ModelRecord:
    """One saved project model (a cohort checkpoint): its version, file and what it was trained on."""

    version: int
    path: str
    created: str = field(default_factory=now_iso)
    scans: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "path": self.path, "created": self.created, "scans": list(self.scans),
                "info": dict(self.info)}

    @classmethod
    def from_json(cls, d: Any) -> ModelRecord:
        if not isinstance(d, dict) or "version" not in d or not isinstance(d.get("path"), str):
            raise ProjectError("a model entry needs a 'version' and a 'path'")
        return cls(version=int(d["version"]), path=d["path"], created=str(d.get("created") or now_iso()),
                   scans=[str(s) for s in d.get("scans") or []], info=dict(d.get("info") or {}))


@dataclass
class LabelSpec:
    """The project's classes: every scan's marks use the same background label and class ids.

    Why project-wide: one network learns from all scans, so "2" must mean the same structure in each.
    Set by the first marks saved; later marks may use a subset of the classes, never a new background.
    """

    background_label: int | None = None
    classes: list[int] = field(default_factory=list)
    class_names: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"background_label": self.background_label, "classes": list(self.classes),
                "class_names": {str(k): v for k, v in sorted(self.class_names.items())}}

    @classmethod
    def from_json(cls, d: Any) -> LabelSpec:
        d = d or {}
        if not isinstance(d, dict):
            raise ProjectError("'labels' must be an object")
        return cls(background_label=_opt_int(d.get("background_label")),
                   classes=[int(c) for c in d.get("classes") or []],
                   class_names={int(k): str(v) for k, v in (d.get("class_names") or {}).items()})
