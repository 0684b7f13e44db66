"""`MultiViewDataModule`: train / val / test `MultiViewDataset`s from file lists, batched with `Views.collate`.

Instantiated from ``conf/data/*.yaml``; every argument is a key there (documented in those files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from facelift.data.image_cache import ImageCache, cache_device, warm
from facelift.data.multiview import MultiViewDataset, PhotometricAugmentation
from facelift.data.rig import RigNormalization
from facelift.data.sample_folder import read_file_list
from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.errors import InputError
from facelift.views import Views

log = logging.getLogger("facelift")


def usable_workers(asked: int) -> int:
    """At most one DataLoader worker per core this process may run on: more only queue for the same cores (and
    torch warns about them), so ``num_workers: 10`` means 10 on a large machine and 2 on a 2-core one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(asked, cores)


class MultiViewDataModule(L.LightningDataModule):
    def __init__(self, data_dir: str | Path, train_list: str, val_list: str, test_list: str | None = None, *,
                 num_views: int, num_input_views: int, target_has_input: bool, image_size: int,
                 resize_mode: str = "pad", background_color: str | float = "white", mask_threshold: float = 0.98,
                 view_sampling: str = "random", maximize_view_overlap: bool = False,
                 view_overlap_angle: float = 86.0, input_views: list[int] | None = None,
                 normalize_cameras: RigNormalization | Mapping | None = None,
                 augmentation: PhotometricAugmentation | Mapping | None = None, skip_bad_samples: bool = False,
                 batch_size_per_gpu: int = 2, num_workers: int = 0, synthesize: Mapping | None = None,
                 train_repeats: int = 1, holdout_views: list[int] | None = None, cache: str = "none"):
        super().__init__()
        self.save_hyperparameters()  # stored in checkpoints: eval.py reads the data the model was trained on
        if not target_has_input and num_views <= num_input_views:
            raise ValueError(f"num_views={num_views} leaves no target view beside {num_input_views} inputs and "
                             "target_has_input is false")
        self.data_dir = Path(data_dir)
        self.lists = {"train": train_list, "val": val_list, "test": test_list}  # no test list: no test split
        # read by the GS-LRM system (interpolated from the data config)
        self.num_input_views, self.target_has_input = num_input_views, target_has_input
        self.batch_size, self.num_workers = batch_size_per_gpu, num_workers
        self.dataset_args = dict(
            num_views=num_views, num_input_views=num_input_views, image_size=image_size, resize_mode=resize_mode,
            background_color=background_color, mask_threshold=mask_threshold, view_sampling=view_sampling,
            maximize_view_overlap=maximize_view_overlap, view_overlap_angle=view_overlap_angle,
            input_views=input_views, holdout_views=holdout_views,
            normalize_cameras=normalize_cameras, augmentation=augmentation, skip_bad_samples=skip_bad_samples)
        probe = MultiViewDataset([], **self.dataset_args)  # check every setting now, not in a worker later
        self.dataset_args.update(normalize_cameras=probe.normalize, augmentation=probe.augmentation)
        if train_repeats < 1:
            raise ValueError(f"train_repeats must be >= 1, got {train_repeats}")
        self.synthesize = dict(synthesize) if synthesize else None
        self.train_repeats = train_repeats
        self.cache_device = cache_device(cache)  # None: no cache
        self.datasets: dict[str, MultiViewDataset] = {}

    def prepare_data(self) -> None:
        """Make the synthetic set on first use when ``synthesize`` is configured and the train list is missing
        (Lightning calls this once per node, before any process reads the data)."""
        if self.synthesize and not self.list_path("train").exists():
            log.info("no %s yet: writing a synthetic set there (%s)", self.list_path("train"), self.synthesize)
            write_dataset(self.data_dir, **self.synthesize)

    def list_path(self, split: str) -> Path:
        """A list given relative is taken relative to ``data_dir``."""
        if not self.lists[split]:
            raise InputError(self.data_dir, f"has no {split} list (data.{split}_list is null)")
        path = Path(self.lists[split])
        return path if path.is_absolute() else self.data_dir / path

    def dataset(self, split: str) -> MultiViewDataset:
        if split not in self.datasets:
            samples = read_file_list(self.list_path(split)) * (self.train_repeats if split == "train" else 1)
            cache = ImageCache(self.cache_device) if self.cache_device is not None else None
            self.datasets[split] = MultiViewDataset(samples, evaluation=split != "train", cache=cache,
                                                    **self.dataset_args)
            warm(self.datasets[split])  # before any worker forks: they share the decoded pages
        return self.datasets[split]

    def loader_options(self) -> dict:
        """DataLoader workers and pinning: a GPU cache assembles batches in the main process, already on the GPU."""
        on_gpu = self.cache_device is not None and self.cache_device.type == "cuda"
        return dict(num_workers=0 if on_gpu else usable_workers(self.num_workers),
                    pin_memory=torch.cuda.is_available() and not on_gpu)  # page-locked batches upload asynchronously

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ("train", "val"))
        for split in splits:
            self.dataset(split)

    def _loader(self, split: str) -> DataLoader:
        options = self.loader_options()
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=split == "train",
                          collate_fn=Views.collate, persistent_workers=options["num_workers"] > 0, **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
