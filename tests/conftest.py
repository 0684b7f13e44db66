"""Shared test fixtures: paths to the read-only reference data beside the checkout."""

from pathlib import Path

import pytest

import facelift  # noqa: F401  (first, before any test imports torch: it sets torch's thread wait policy)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
SAMPLE = FIXTURES / "facelift_sample"
REFERENCE = FIXTURES / "reference"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES} (CI keeps ../shared beside the checkout)")
    return FIXTURES
