"""Optional packages (extras) fail with one line that names the extra, never an ImportError traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from napari_sparseseg._optional import available, require
from napari_sparseseg.cli import main
from napari_sparseseg.errors import MissingDependencyError


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # makes ``import psutil`` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'napari-sparseseg\[bench\]'"):
        require("psutil", "bench", "measuring memory")
    assert not available("psutil")
    assert available("numpy") and require("numpy", "x", "y").__name__ == "numpy"


def test_bench_without_its_extra_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "napari-sparseseg[bench]" in err[0] and "matplotlib" in err[0]


def test_fast_encoder_needs_both_onnx_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_sparseseg.sam.fast import onnx_available

    monkeypatch.setitem(sys.modules, "onnx", None)
    assert not onnx_available()
