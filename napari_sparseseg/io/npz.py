"""Read the headers of an ``.npz`` (shapes, dtypes) without loading its arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an ``.npz``, read from the headers only (nothing is loaded).

    Lets a loader refuse an array of the wrong grid, or a small file that would inflate to gigabytes,
    before allocating it.  The zip's recorded uncompressed size must match the header's shape.
    Any damage raises ``ValueError`` with one line.
    """
    import zipfile

    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                    if version not in reader:
                        raise ValueError(f"npy format version {version}")
                    shape, _fortran, dtype = reader[version](fh)
                    header_len = fh.tell()
                if dtype.hasobject:
                    raise ValueError("object arrays are not allowed")
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if info.file_size != header_len + nbytes:
                    raise ValueError(f"{info.filename}: {info.file_size} bytes for an array of {nbytes}")
                out[info.filename[:-4]] = (tuple(int(x) for x in shape), dtype)
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, struct errors...
        raise ValueError(f"{type(e).__name__}: {e}") from None
    return out
