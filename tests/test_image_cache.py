"""The decode-once image cache (data.cache): the same batches as reading the files, decoding only what is read."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from facelift.data.datamodule import MultiViewDataModule
from facelift.data.image_cache import ImageCache, _compact
from facelift.data.sample_folder import read_file_list
from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.image_io import read_image


@pytest.fixture(scope="module", params=[("human", 32), ("mouse", 40)], ids=["square", "padded"])
def tiny_set(request, tmp_path_factory):
    """Square 32² views (human ring) or 40-wide non-square frames that are padded to square (mouse rig)."""
    rig, size = request.param
    return write_dataset(tmp_path_factory.mktemp(rig) / "set", rig, num_samples=5, size=size, num_views=8)


def datamodule(root, cache: str, num_workers: int = 0, **changes) -> MultiViewDataModule:
    """Every random choice on: views, inputs, background, brightness and contrast, camera normalization."""
    args = dict(num_views=4, num_input_views=2, target_has_input=True, image_size=32, background_color="random",
                augmentation=dict(enabled=True, brightness_range=[0.7, 1.3], contrast_range=[0.7, 1.3]),
                normalize_cameras=dict(enabled=True), batch_size_per_gpu=2, num_workers=num_workers, cache=cache)
    return MultiViewDataModule(root, "data_train.txt", "data_val.txt", **{**args, **changes})


def batches(dm: MultiViewDataModule, seed: int, epochs: int = 2) -> list:
    torch.manual_seed(seed)  # before the first use of the data: the cache's warm-up must not move the RNG
    train = dm.train_dataloader()
    out = [b for _ in range(epochs) for b in train]
    return out + list(dm.val_dataloader())


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in ("images", "masks", "index", "background"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name
        assert torch.equal(x.cameras.c2w, y.cameras.c2w) and torch.equal(x.cameras.intrinsics, y.cameras.intrinsics)
        assert (x.cameras.width, x.cameras.height) == (y.cameras.width, y.cameras.height)


@pytest.mark.parametrize("cache", ["memory", "device"])  # device falls back to the CPU here: the same code path
def test_cache_gives_the_file_paths_batches(tiny_set, cache):
    files = batches(datamodule(tiny_set, "none"), seed=3)
    cached_dm = datamodule(tiny_set, cache)
    cached = batches(cached_dm, seed=3)
    assert_same(files, cached)
    assert len({tuple(b.index[:, :, 0].flatten().tolist()) for b in files}) > 1  # the draws really vary
    assert cached_dm.dataset("train").cache.images and cached_dm.dataset("train").cache.rigs  # ...from the cache
    first = next(iter(cached_dm.dataset("train").cache.images.values()))
    assert first.dtype == torch.uint8  # 8-bit PNGs are kept in a quarter of the bytes


@pytest.mark.slow
def test_memory_cache_is_shared_with_workers(tiny_set):
    """Worker processes fork after the warm-up and assemble the same batches from the cache as from the files."""
    assert_same(batches(datamodule(tiny_set, "none", num_workers=2), seed=5, epochs=1),
                batches(datamodule(tiny_set, "memory", num_workers=2), seed=5, epochs=1))


def test_cache_decodes_only_the_views_the_dataset_reads(tiny_set, tmp_path):
    """With the first 4 views fixed, the others (4 of the ring's 8, 2 of the mouse rig's 6) are never opened:
    deleted, nothing notices."""
    root = tmp_path / "set"
    shutil.copytree(tiny_set, root)
    samples = read_file_list(root / "data_train.txt") + read_file_list(root / "data_val.txt")
    for sample in samples:
        for image in sorted((sample / "images").glob("cam_*.png"))[4:]:
            image.unlink()
    dm = datamodule(root, "memory", view_sampling="fixed")
    batches(dm, seed=0, epochs=1)
    decoded = set(dm.dataset("train").cache.images) | set(dm.dataset("val").cache.images)
    assert decoded == {s / "images" / f"cam_{v:03d}.png" for s in samples for v in range(4)}


def test_compact_keeps_exactly_the_readers_values(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 65536, (6, 5), dtype=np.uint16)).save(tmp_path / "b.png")  # 16-bit grey
    eight, sixteen = read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png")
    assert _compact(eight).dtype == torch.uint8 and torch.equal(_compact(eight).float() / 255, eight)
    assert _compact(sixteen).dtype == torch.float32 and torch.equal(_compact(sixteen), sixteen)  # no 8-bit loss


def test_camera_files_are_parsed_once(tiny_set):
    cache = ImageCache()
    path = read_file_list(tiny_set / "data_train.txt")[0] / "opencv_cameras.json"
    assert cache.camera_file(path) is cache.camera_file(path)
