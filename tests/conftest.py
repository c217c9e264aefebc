"""Shared fixtures. Real reference data live in ../shared/data (not in this repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("MKUNET_SHARED_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
).resolve()
"""The real-data folder: ``MKUNET_SHARED_DATA`` when set (and not empty), else ../shared/data."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real CT data and reference values; the test skips when it is absent.

    Every test that reads real data takes its folder from this fixture (never a path of its own),
    so that ``MKUNET_SHARED_DATA`` moves all of them at once.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real reference data not found at {SHARED_DATA} (only present in the project's workspace; "
            "set MKUNET_SHARED_DATA to point at a copy)"
        )
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test process: `make test` runs 2 xdist workers on 2 cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)
