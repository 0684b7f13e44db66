"""MVDiffusion training data: per object, one conditioning image and the 6 target views in MVDiffusion's order.

Layout (FaceLift's): a sample folder holds the view images (``cam_000..005.png``, RGBA) directly, or in a subfolder
(``images/`` for prepared mouse data); ``view_files`` names them in the order front, front-right, right, back, left,
front-left. Per item: read the views -> mask from alpha (or near-white threshold for RGB files) -> composite over a
background (training: one drawn per object among ``train_backgrounds``, as FaceLift's "three choices"; validation:
``val_background``) -> pad to square (or stretch) -> resize. The conditioning image is view ``cond_view`` of the same
object over the same background (FaceLift: the front view), or a random view with ``random_cond_view``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from facelift.data.image_ops import RESIZE_MODES, resize, square_padding
from facelift.data.multiview import BACKGROUNDS, split_mask
from facelift.data.sample_folder import read_file_list
from facelift.errors import InputError
from facelift.image_io import read_image

log = logging.getLogger("facelift")


@dataclass
class MVDiffusionBatch:
    cond: Tensor  # [B, 3, H, W] conditioning image in [0, 1], over the background
    views: Tensor  # [B, V, 3, H, W] target views in MVDiffusion's order, in [0, 1], over the background
    masks: Tensor  # [B, V, 1, H, W] foreground of the targets
    background: Tensor  # [B, 3] colour the images were composited over
    index: Tensor  # [B] long: sample id in the dataset

    def to(self, device) -> "MVDiffusionBatch":
        return MVDiffusionBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @staticmethod
    def collate(items: list["MVDiffusionBatch"]) -> "MVDiffusionBatch":
        fields = MVDiffusionBatch.__dataclass_fields__
        return MVDiffusionBatch(*(torch.cat([getattr(i, f) for i in items]) for f in fields))


def background_colour(name: str | float) -> Tensor:  # [3]
    if isinstance(name, (int, float)):
        return torch.full((3,), float(name))
    if name not in BACKGROUNDS:
        raise ValueError(f"unknown background {name!r}: one of {sorted(BACKGROUNDS)} or a grey level in [0, 1]")
    return torch.tensor(BACKGROUNDS[name])


class MVDiffusionDataset(Dataset):
    def __init__(self, samples: list[Path], *, view_files: list[str], image_dir: str, image_size: int,
                 resize_mode: str, backgrounds: list[str | float], cond_view: int, random_cond_view: bool,
                 mask_threshold: float, train: bool):
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if not 0 <= cond_view < len(view_files):
            raise ValueError(f"cond_view {cond_view} is not an index into view_files ({len(view_files)} views)")
        self.samples, self.view_files, self.image_dir = samples, list(view_files), image_dir
        self.image_size, self.resize_mode, self.mask_threshold = image_size, resize_mode, mask_threshold
        self.backgrounds = torch.stack([background_colour(b) for b in backgrounds])  # [K, 3]
        self.cond_view, self.random_cond_view, self.train = cond_view, random_cond_view, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> MVDiffusionBatch:
        # Training draws from the global RNG (seeded per worker); validation is a fixed function of the index.
        gen = None if self.train else torch.Generator().manual_seed(i)
        bg = self.draw_background(gen)
        folder = self.samples[i] / self.image_dir
        views, masks = zip(*(self._read(folder / name, bg) for name in self.view_files))
        views, masks = torch.stack(views), torch.stack(masks)  # [V, 3, S, S], [V, 1, S, S]
        cond = int(torch.randint(len(views), (), generator=gen)) if self.random_cond_view else self.cond_view
        return MVDiffusionBatch(views[cond][None], views[None], masks[None], bg[None], torch.tensor([i]))

    def draw_background(self, gen: torch.Generator | None = None) -> Tensor:  # [3]
        return self.backgrounds[torch.randint(len(self.backgrounds), (), generator=gen)]

    def _read(self, path: Path, bg: Tensor) -> tuple[Tensor, Tensor]:
        rgb, mask = split_mask(read_image(path), self.mask_threshold)  # [3, H, W], [1, H, W]
        if mask.sum() == 0:
            raise InputError(path, "no foreground (empty alpha / all near-white): nothing to learn from this view")
        rgb = rgb * mask + bg[:, None, None] * (1 - mask)
        h, w = rgb.shape[-2:]
        if self.resize_mode == "pad" and h != w:
            left, top, right, bottom = square_padding(w, h)
            rgb = torch.stack([F.pad(c, (left, right, top, bottom), value=float(v)) for c, v in zip(rgb, bg)])
            mask = F.pad(mask, (left, right, top, bottom), value=0.0)
        s = self.image_size
        return resize(rgb, s, s).clamp(0, 1), resize(mask, s, s).clamp(0, 1)


class MVDiffusionDataModule(L.LightningDataModule):
    """Human (FaceLift layout) or mouse (prepared set) MVDiffusion data; see conf/data/*_mvdiffusion.yaml."""

    def __init__(self, data_dir: str, train_list: str, val_list: str, view_files: list[str], image_dir: str = "",
                 cond_view: int = 0, random_cond_view: bool = False, image_size: int = 512, resize_mode: str = "pad",
                 train_backgrounds: list[str | float] = ("white", "black", "gray"),
                 val_background: str | float = "white",
                 mask_threshold: float = 0.98, batch_size_per_gpu: int = 8, val_batch_size: int = 1,
                 num_val_samples: int | None = None, num_workers: int = 4):
        super().__init__()
        self.save_hyperparameters()

    def _dataset(self, list_name: str, train: bool) -> MVDiffusionDataset:
        h = self.hparams
        samples = read_file_list(Path(h.data_dir) / list_name)
        if not train and h.num_val_samples:
            samples = samples[:h.num_val_samples]
        return MVDiffusionDataset(samples, view_files=list(h.view_files), image_dir=h.image_dir,
                                  image_size=h.image_size, resize_mode=h.resize_mode,
                                  backgrounds=list(h.train_backgrounds) if train else [h.val_background],
                                  cond_view=h.cond_view, random_cond_view=h.random_cond_view and train,
                                  mask_threshold=h.mask_threshold, train=train)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = self._dataset(self.hparams.train_list, train=True)
        if stage in ("fit", "validate"):
            self.val_set = self._dataset(self.hparams.val_list, train=False)
        sizes = {k: len(getattr(self, k)) for k in ("train_set", "val_set") if hasattr(self, k)}
        log.info("MVDiffusion data: %s samples", sizes)

    def _loader(self, dataset: MVDiffusionDataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          collate_fn=MVDiffusionBatch.collate, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.hparams.batch_size_per_gpu, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.val_batch_size, shuffle=False)
