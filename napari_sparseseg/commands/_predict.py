"""``sparseseg segment IMAGE --init MODEL -o OUT`` without ``--annotations``: prediction only.

Why a separate path: with no marks there are no pseudo-labels and nothing to fine-tune on, so the
per-scan Trainer has nothing to do; a model from ``sparseseg train`` (a cohort model) segments the
scan from the image alone (:class:`~napari_sparseseg.cohort.CohortModel`), in seconds.
"""

from __future__ import annotations

import argparse
import sys
import time


def predict_without_marks(args: argparse.Namespace) -> int:
    from ..cohort import CohortModel
    from ..errors import SparsesegError
    from ..io import read_volume
    from .segment import _write

    if args.init is None:
        raise SparsesegError("give --annotations (the scan's marks), or --init MODEL (a `sparseseg train` model) "
                             "to segment the scan without marks")
    if args.method != "default":
        raise SparsesegError("without --annotations only the cohort model predicts; drop --method")
    t0 = time.perf_counter()
    image = read_volume(args.image)
    model = CohortModel.load(args.init, device=args.device)
    if not args.quiet:
        print(f"sparseseg segment: no marks: predicting with {args.init.name} (model version {model.version})",
              file=sys.stderr, flush=True)
    labels, uncertainty = model.predict(image)
    _write(args.output, labels, image)
    if args.uncertainty is not None:
        _write(args.uncertainty, uncertainty, image)
    if not args.quiet:
        print(f"sparseseg segment: wrote {args.output} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return 0
