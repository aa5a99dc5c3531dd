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
    """``../shared/data`` (or ``$SPARSESEG_DATA``).  Missing data fails in CI and skips elsewhere."""
    if SHARED_DATA is None:
        if os.environ.get("CI"):
            pytest.fail("shared data not found: set SPARSESEG_DATA or place it at ../shared/data")
        pytest.skip("shared data not found (set SPARSESEG_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return REPO / "sample_data"
