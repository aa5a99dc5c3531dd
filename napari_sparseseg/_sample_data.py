"""napari sample data: one hippocampus and one brain-tumour case bundled in ``sample_data/``.

See ``sample_data/README.md`` for sources, licences and changes.  The folder ships inside the package
(so an installed wheel has it); ``$SPARSESEG_SAMPLE_DATA`` overrides its location.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._reader import LayerData, image_layer_data, labels_layer_data
from .errors import VolumeError
from .io import read_labels, read_volume

HIPPOCAMPUS = ("hippocampus", "hippocampus_001")
BRAIN_TUMOR = ("brain_tumor", "PGBM-008_1993-06-10")


def sample_root() -> Path:
    env = os.environ.get("SPARSESEG_SAMPLE_DATA")
    return Path(env) if env else Path(__file__).resolve().parent / "sample_data"


def sample_paths(dataset: str, case: str) -> tuple[Path, Path]:
    """(image, labels) paths of a bundled case."""
    root = sample_root() / dataset
    img, lab = root / "imagesTr" / f"{case}.nii.gz", root / "labelsTr" / f"{case}.nii.gz"
    if not img.is_file() or not lab.is_file():
        raise VolumeError(f"sample {case} not found under {root} (set SPARSESEG_SAMPLE_DATA to the sample_data folder)")
    return img, lab


def _load(dataset: str, case: str) -> list[LayerData]:
    img_path, lab_path = sample_paths(dataset, case)
    vol = read_volume(img_path)
    lab = read_labels(lab_path, like=vol)
    return [image_layer_data(vol), labels_layer_data(lab, name=f"{case} labels")]


def hippocampus() -> list[LayerData]:
    return _load(*HIPPOCAMPUS)


def brain_tumor() -> list[LayerData]:
    return _load(*BRAIN_TUMOR)
