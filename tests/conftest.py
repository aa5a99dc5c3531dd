"""Shared fixtures: where the real data lives, and the ``slow`` marker switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    env = os.environ.get("SPARSESEG_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in candidates:
        if (c / "hippocampus").is_dir():
            return c
    return None


SHARED_DATA = _find_shared_data()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("SPARSESEG_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The larger benchmark data (ACDC and more hippocampus / brain-tumour cases, ``$SPARSESEG_DATA``).
    Tests that need more than the bundled samples use it; missing data fails in CI and skips elsewhere."""
    if SHARED_DATA is None:
        msg = "needs the larger benchmark data (ACDC, more cases), not bundled: set SPARSESEG_DATA"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled samples (one hippocampus, one brain-tumour case, MSD layout): always present."""
    return REPO / "napari_sparseseg" / "sample_data"


@pytest.fixture(autouse=True)
def _private_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own settings and user-data folders: remembered choices never leak between
    tests, and the tests never touch the user's own (the embedding cache stays shared: it is a cache)."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SPARSESEG_CONFIG_HOME", str(base / "config"))
    monkeypatch.setenv("SPARSESEG_DATA_HOME", str(base / "data"))
