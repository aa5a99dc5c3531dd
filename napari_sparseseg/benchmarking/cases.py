"""Benchmark cases and annotation settings over the shared data sets.

A *case* is one image with its expert label map; a *setting* says how the simulated (or real human)
annotator marks it.  Both are plain strings so a run is described by a short, reproducible spec:

* ``human-scribbles``  -- ACDC only: the real scribbles of Valvano et al. (``scribblesTr``, 4 = background);
* a simulated annotator in the grammar ``sparseseg simulate --mode`` uses
  (:mod:`napari_sparseseg.annotations.annotators`): ``scribbles`` (tuned to the human ACDC density),
  ``points:K`` (``K`` clicks per class and ``K`` negative clicks), ``slices:K`` (``K`` fully labelled
  slices along axis 0).  ``points-K`` / ``slices-K``, the spelling of earlier results, mean the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..annotations import SparseAnnotation
from ..annotations.annotators import parse_annotator, simulate
from ..errors import AnnotationError, SparsesegError
from ..io import Volume, read_labels, read_volume


@dataclass(frozen=True)
class DatasetInfo:
    """What the benchmark must know about one shared data set."""

    folder: str
    classes: tuple[int, ...]
    class_names: dict[int, str] = field(default_factory=dict)
    human_scribbles: str | None = None  # sub-folder with real scribbles, if any

    @property
    def background_label(self) -> int:
        """ACDC's scribbles use 4 = background; every simulated setting uses the same rule (max + 1)."""
        return max(self.classes) + 1


DATASETS: dict[str, DatasetInfo] = {
    "acdc": DatasetInfo("acdc", (1, 2, 3), {1: "RV", 2: "MYO", 3: "LV"}, human_scribbles="scribblesTr"),
    "hippocampus": DatasetInfo("hippocampus", (1, 2), {1: "anterior", 2: "posterior"}),
    "brain_tumor": DatasetInfo("brain_tumor", (1,), {1: "tumour"}),
}


@dataclass
class Case:
    """One benchmark image with its dense ground truth (0 = background) on the same grid."""

    dataset: str
    name: str
    image: Volume
    gt: np.ndarray
    info: DatasetInfo

    @property
    def classes(self) -> tuple[int, ...]:
        return self.info.classes

    @property
    def present_classes(self) -> tuple[int, ...]:
        """Classes of the data set present in this case (a mark-less class cannot validate)."""
        return tuple(c for c in self.classes if bool((self.gt == c).any()))

    @property
    def background_label(self) -> int:
        return self.info.background_label

    @property
    def root(self) -> Path:
        return Path(self.image.source).parents[1] if self.image.source else Path()


def find_data_root(explicit: str | Path | None = None, *, sample_fallback: bool = False) -> Path:
    """``explicit``, else ``$SPARSESEG_DATA``, else a ``shared/data`` folder beside the checkout; with
    ``sample_fallback`` the bundled sample data (one hippocampus and one brain-tumour case, the same
    layout) when none of those exists, so the quick benchmark runs on a clone with nothing beside it."""
    cands = [Path(explicit)] if explicit else []
    if os.environ.get("SPARSESEG_DATA"):
        cands.append(Path(os.environ["SPARSESEG_DATA"]))
    repo = Path(__file__).resolve().parents[2]
    cands += [repo.parent / "shared" / "data", repo / "shared" / "data"]
    for c in cands:
        if (c / "hippocampus").is_dir() or (c / "acdc").is_dir():
            return c
    if sample_fallback and not explicit:
        from .._sample_data import sample_root

        if (sample_root() / "hippocampus").is_dir():
            return sample_root()
    raise FileNotFoundError(2, "benchmark data not found (pass --data or set SPARSESEG_DATA)", str(cands[0]))


def has_case(root: Path, dataset: str, name: str) -> bool:
    """Whether ``root`` holds ``name`` of ``dataset`` (image and labels)."""
    base = Path(root) / _info(dataset).folder
    return (base / "imagesTr" / f"{name}.nii.gz").is_file() and (base / "labelsTr" / f"{name}.nii.gz").is_file()


def list_cases(root: Path, dataset: str) -> list[str]:
    """Case names (file names without ``.nii.gz``) that have both an image and a label map, sorted."""
    info = _info(dataset)
    img_dir = Path(root) / info.folder / "imagesTr"
    lab_dir = Path(root) / info.folder / "labelsTr"
    if not img_dir.is_dir():
        raise FileNotFoundError(2, f"no {dataset} images", str(img_dir))
    names = sorted(p.name[: -len(".nii.gz")] for p in img_dir.glob("*.nii.gz"))
    return [n for n in names if (lab_dir / f"{n}.nii.gz").is_file()]


def load_case(root: Path, dataset: str, name: str) -> Case:
    info = _info(dataset)
    base = Path(root) / info.folder
    image = read_volume(base / "imagesTr" / f"{name}.nii.gz")
    gt = np.asarray(read_labels(base / "labelsTr" / f"{name}.nii.gz", like=image).array).astype(np.int16)
    return Case(dataset, name, image, gt, info)


def _info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise SparsesegError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}") from None


HUMAN = "human-scribbles"  # a data set's real scribbles; every other setting is a simulated annotator


def canonical_setting(setting: str) -> str:
    """The setting's one spelling: ``human-scribbles``, ``dense``, or an annotator's canonical name
    (``points-5`` -> ``points:5``: the grammar of :mod:`napari_sparseseg.annotations.annotators`)."""
    if setting in (HUMAN, "dense"):
        return setting
    try:
        return parse_annotator(setting).name
    except AnnotationError:
        return setting


def check_setting(dataset: str, setting: str) -> None:
    """Raise :class:`SparsesegError` if ``setting`` does not exist or does not apply to ``dataset``."""
    info = _info(dataset)
    if setting == HUMAN:
        if info.human_scribbles is None:
            raise SparsesegError(f"{dataset} has no human scribbles; use a simulated setting")
        return
    try:
        parse_annotator(setting)
    except AnnotationError as exc:
        raise SparsesegError(f"unknown setting {setting!r}: use {HUMAN} or an annotator ({exc})") from None


def make_annotation(case: Case, setting: str, seed: int = 0) -> SparseAnnotation:
    """The marks a (simulated or real) annotator gives for ``case`` under ``setting``."""
    check_setting(case.dataset, setting)
    bg = case.background_label
    if setting == HUMAN:
        path = case.root / str(case.info.human_scribbles) / f"{case.name}.nii.gz"
        labels = np.asarray(read_labels(path, like=case.image).array)
        return SparseAnnotation(labels.astype(np.int16), bg, case.present_classes, dict(case.info.class_names))
    ann = simulate(case.gt, setting, bg, seed=seed, spacing=case.image.spacing)
    return SparseAnnotation(ann.labels, bg, case.present_classes, dict(case.info.class_names))
