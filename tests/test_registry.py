"""One registry style for every extension point, one annotator grammar, no import cycle in the bench."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.errors import AnnotationError, CheckpointError, SparsesegError
from napari_sparseseg.registry import Registry, UnknownNameError


def test_register_get_names_and_a_one_line_error() -> None:
    reg: Registry[int] = Registry("widget kind")

    @reg.register("b")
    def _b() -> int:
        return 2

    reg.register("a", 1)
    assert reg.names() == ("b", "a") and reg.get("a") == 1 and reg["b"] is _b and "a" in reg and len(reg) == 2
    with pytest.raises(UnknownNameError, match=r"^unknown widget kind 'c'; choose one of b, a$"):
        reg.get("c")
    assert isinstance(UnknownNameError("x"), SparsesegError)
    assert reg.pop("a") == 1 and reg.names() == ("b",)


def test_lazy_loading_runs_once() -> None:
    calls = []
    reg: Registry[str] = Registry("thing", load=lambda: (calls.append(1), reg.register("x", "X")))
    assert calls == [] and reg.get("x") == "X" and reg.names() == ("x",) and calls == [1]


def test_every_extension_point_is_a_registry() -> None:
    from napari_sparseseg.active import STRATEGIES
    from napari_sparseseg.annotations.annotators import ANNOTATORS
    from napari_sparseseg.benchmarking.contenders import CONTENDERS
    from napari_sparseseg.methods import SEGMENT_METHODS
    from napari_sparseseg.pseudo import PSEUDO_METHODS
    from napari_sparseseg.sam import SAM_BACKENDS

    for reg in (STRATEGIES, ANNOTATORS, CONTENDERS, SEGMENT_METHODS, PSEUDO_METHODS, SAM_BACKENDS):
        assert isinstance(reg, Registry) and reg.names()
    assert {"entropy", "random"} <= set(STRATEGIES) and {"scribbles", "points", "slices"} <= set(ANNOTATORS)
    assert {"sparseseg", "supervised"} <= set(CONTENDERS) and "default" in SEGMENT_METHODS
    assert "random-walker" in PSEUDO_METHODS and "litemedsam" in SAM_BACKENDS
    with pytest.raises(AnnotationError, match="unknown pseudo-label method 'nope'; choose one of"):
        PSEUDO_METHODS.get("nope")
    with pytest.raises(CheckpointError, match="unknown backend"):
        SAM_BACKENDS.get("nope")


def test_one_annotator_grammar_for_the_cli_and_the_benchmark() -> None:
    from napari_sparseseg.annotations.annotators import parse_annotator, simulate
    from napari_sparseseg.benchmarking.cases import canonical_setting
    from napari_sparseseg.commands.simulate import parse_mode

    assert parse_annotator("points-5") == parse_annotator("points:5") == parse_mode("points:5")
    assert parse_annotator("slices:3:1").name == "slices:3:1" and parse_annotator("Scribbles").name == "scribbles"
    assert canonical_setting("slices-1") == "slices:1" and canonical_setting("human-scribbles") == "human-scribbles"
    for bad in ("points", "points:0", "slices:x", "lasso:2", "points:3:1"):
        with pytest.raises(AnnotationError):
            parse_annotator(bad)
    gt = np.zeros((6, 20, 20), np.int16)
    gt[:, 5:12, 5:12] = 1
    a, b = simulate(gt, "slices-2", 2, seed=3), simulate(gt, "slices:2", 2, seed=3)
    assert np.array_equal(a.labels, b.labels) and len(a.annotated_slices()) == 2


def test_bench_parallel_does_not_import_the_runner() -> None:
    """The runner hands its job function to ``run_jobs``; a cycle hidden in function-level imports is gone."""
    import napari_sparseseg.benchmarking.parallel as parallel

    tree = ast.parse(Path(parallel.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "runner" not in imported and not any(m and m.endswith(".runner") for m in imported)
