"""Shared test fixtures: paths to the read-only reference data beside the checkout, and references built once."""

import os
from pathlib import Path

import pytest

import facelift  # noqa: F401  (first, before any test imports torch: it sets torch's thread wait policy)
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest-xdist workers share the cores: an equal intra-op share each
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
SAMPLE = FIXTURES / "facelift_sample"
REFERENCE = FIXTURES / "reference"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES} (CI keeps ../shared beside the checkout)")
    return FIXTURES


@pytest.fixture(scope="session")
def vgg16_file(tmp_path_factory) -> Path:
    """A seeded random VGG16 in torchvision's file layout: what LPIPS reads, here and in the reference."""
    from references import write_random_vgg16

    return write_random_vgg16(tmp_path_factory.mktemp("lpips") / "vgg16-397923af.pth")


@pytest.fixture(scope="session")
def reference_lpips(vgg16_file):
    """The ``lpips`` package's own LPIPS (VGG, v0.1) on ``vgg16_file``; images in [-1, 1]."""
    from references import lpips_package_reference

    return lpips_package_reference(vgg16_file)


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> Path:
    """A small synthetic human set (4 samples, 8 views of 32 px) where the default job looks for its data, made
    once per session: ``paths.data_dir=<its parent>`` points a composed default config at it."""
    from facelift.data.synthetic.blob_scenes import write_dataset

    folder = tmp_path_factory.mktemp("tiny_data") / "synthetic_human_32px"
    return write_dataset(folder, "human", num_samples=4, size=32, num_views=8)
