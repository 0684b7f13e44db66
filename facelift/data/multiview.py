"""The multi-view dataset: one item = some posed views of one sample folder, as a `Views` batch of one.

Per item: read the camera file -> normalize the whole rig (optional) -> choose ``num_views`` views (the first
``num_input_views`` are the inputs) among the cameras not held out (``holdout_views``; in evaluation the held-out
ones follow as extra targets) -> read only those images -> masks from alpha, or from a near-white threshold
when a file has none -> photometric augmentation, identical for all views of the item (train only) -> composite over
the background -> make square (pad or stretch) at ``image_size`` with matching intrinsics.
Training items draw from the global RNG (seeded per worker by the DataLoader); evaluation items are a fixed
function of their index, so every validation pass sees the same views and backgrounds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import Dataset

from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE, read_camera_file
from facelift.data.image_cache import ImageCache
from facelift.data.image_ops import RESIZE_MODES, fit_square
from facelift.data.rig import RigNormalization, normalize_rig
from facelift.data.sample_folder import read_views
from facelift.errors import InputError
from facelift.views import Views

log = logging.getLogger(__name__)

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "gray": (0.5, 0.5, 0.5)}
VIEW_SAMPLING = ("random", "fixed")


@dataclass
class PhotometricAugmentation:
    """Brightness and contrast, one draw per item applied to every view (config node ``augmentation``)."""

    enabled: bool = False  # training items only; validation and test are never augmented
    brightness_range: tuple[float, float] = (1.0, 1.0)  # colour multiplied by a factor drawn from this range
    contrast_range: tuple[float, float] = (1.0, 1.0)  # distance from mid-grey (0.5) multiplied by a factor from here

    def __post_init__(self) -> None:
        for name in ("brightness_range", "contrast_range"):
            lo, hi = (float(x) for x in getattr(self, name))
            if not 0 <= lo <= hi:
                raise ValueError(f"augmentation.{name} must be [low, high] with 0 <= low <= high, got [{lo}, {hi}]")
            setattr(self, name, (lo, hi))

    def draw(self, gen: torch.Generator | None) -> tuple[float, float]:
        (b0, b1), (c0, c1) = self.brightness_range, self.contrast_range
        u = torch.rand(2, generator=gen, dtype=torch.float64)
        return b0 + (b1 - b0) * float(u[0]), c0 + (c1 - c0) * float(u[1])


def adjust_photometric(rgb: Tensor, brightness: float, contrast: float) -> Tensor:
    """The same pixel-wise map for every view: ``((rgb * brightness) - 0.5) * contrast + 0.5``, clamped."""
    return ((rgb * brightness - 0.5) * contrast + 0.5).clamp(0, 1)


def split_mask(images: Tensor, mask_threshold: float) -> tuple[Tensor, Tensor]:
    """``[..., 3|4, H, W]`` -> straight RGB ``[..., 3, H, W]`` and mask ``[..., 1, H, W]``: the alpha channel, or
    for RGB files 0 where every channel is >= ``mask_threshold`` (the white background of segmented images)."""
    if images.shape[-3] == 4:
        return images[..., :3, :, :], images[..., 3:, :, :]
    foreground = (images < mask_threshold).any(dim=-3, keepdim=True)
    return images, foreground.to(images.dtype)


class MultiViewDataset(Dataset):
    def __init__(self, samples: list[Path], *, num_views: int, num_input_views: int, image_size: int,
                 resize_mode: str = "pad", background_color: str | float = "white", mask_threshold: float = 0.98,
                 view_sampling: str = "random", maximize_view_overlap: bool = False,
                 view_overlap_angle: float = 86.0, input_views: Sequence[int] | None = None,
                 normalize_cameras: RigNormalization | Mapping | None = None,
                 augmentation: PhotometricAugmentation | Mapping | None = None, evaluation: bool = False,
                 skip_bad_samples: bool = False, holdout_views: Sequence[int] | None = None,
                 cache: ImageCache | None = None):
        if not 1 <= num_input_views <= num_views:
            raise ValueError(f"need 1 <= num_input_views <= num_views, got {num_input_views} and {num_views}")
        if input_views is not None:
            input_views = [int(i) for i in input_views]
            if len(input_views) != num_input_views or len(set(input_views)) != num_input_views or min(input_views) < 0:
                raise ValueError(f"input_views must name num_input_views={num_input_views} distinct view ids >= 0, "
                                 f"got {input_views}")
        holdout_views = sorted(int(i) for i in holdout_views or ())
        if len(set(holdout_views)) != len(holdout_views) or min(holdout_views, default=0) < 0:
            raise ValueError(f"holdout_views must name distinct view ids >= 0, got {holdout_views}")
        if set(holdout_views) & set(input_views or ()):
            raise ValueError(f"input_views {input_views} include held-out views {holdout_views}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if view_sampling not in VIEW_SAMPLING:
            raise ValueError(f"view_sampling must be one of {VIEW_SAMPLING}, got {view_sampling!r}")
        if maximize_view_overlap and view_sampling != "random":
            raise ValueError("maximize_view_overlap needs view_sampling: random")
        self.background = _check_background(background_color)
        self.samples = list(samples)
        self.num_views, self.num_input_views, self.image_size = num_views, num_input_views, image_size
        self.resize_mode, self.mask_threshold, self.view_sampling = resize_mode, mask_threshold, view_sampling
        self.maximize_view_overlap, self.view_overlap_angle = maximize_view_overlap, view_overlap_angle
        self.input_views = input_views
        self.holdout_views = holdout_views  # sorted; never read by a training item, appended to evaluation items
        self.normalize = _as_dataclass(RigNormalization, normalize_cameras, enabled=False)
        self.augmentation = _as_dataclass(PhotometricAugmentation, augmentation)
        self.evaluation, self.skip_bad_samples = evaluation, skip_bad_samples
        self.skipped = 0  # bad samples skipped by this process (each DataLoader worker counts its own)
        self.cache = cache  # decode-once camera files and images (`facelift.data.image_cache`); None: read files

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> Views:
        for attempt in range(len(self)):
            current = (idx + attempt) % len(self)
            try:
                return self.load(current)
            except InputError as err:
                if not self.skip_bad_samples:
                    raise
                self.skipped += 1
                log.warning("skipping bad sample %s (%d skipped so far in this process): %s",
                            self.samples[current], self.skipped, err)
        raise InputError(None, f"all {len(self)} samples are bad (skip_bad_samples is on)")

    def load(self, idx: int) -> Views:
        """Item ``idx`` (no skipping): `Views` with batch 1, ``[1, num_views, ...]``."""
        path = self.samples[idx] / CAMERA_FILE
        cam_file = self.cache.camera_file(path) if self.cache else read_camera_file(path)
        cameras = self.cache.rig(cam_file, self.rig_cameras) if self.cache else self.rig_cameras(cam_file)
        gen = torch.Generator().manual_seed(idx) if self.evaluation else None
        views = self.choose_views(cameras, gen, cam_file.path)

        images = self.cache.read_views(cam_file, views) if self.cache else read_views(cam_file, views)
        rgb, mask = split_mask(images, self.mask_threshold)  # [N, 3, H, W], [N, 1, H, W]
        if self.augmentation.enabled and not self.evaluation:
            rgb = adjust_photometric(rgb, *self.augmentation.draw(gen))
        background = self.draw_background(gen).to(rgb.device, non_blocking=True)  # [3]; no sync on a GPU cache
        rgb = rgb * mask + background[:, None, None] * (1 - mask)
        pad_value = torch.cat([background, background.new_zeros(1)])
        both, chosen = fit_square(torch.cat([rgb, mask], dim=1), cameras[views].to(torch.float32), self.image_size,
                                  self.resize_mode, pad_value)
        index = torch.stack([torch.tensor(views), torch.full((len(views),), idx)], dim=-1)  # [N, 2]
        cams = Cameras(chosen.c2w[None], chosen.intrinsics[None], chosen.width, chosen.height)
        return Views(both[None, :, :3].clamp(0, 1), both[None, :, 3:].clamp(0, 1), cams, index[None],
                     background[None])

    def rig_cameras(self, cam_file) -> Cameras:
        """The sample's cameras [V] float64, its rig normalized when configured (a function of the file alone)."""
        cameras = cam_file.cameras  # [V] float64
        if self.holdout_views and max(self.holdout_views) >= len(cameras):
            raise InputError(cam_file.path, f"holdout_views {self.holdout_views} name views beyond its "
                                            f"{len(cameras)} views")
        if len(cameras) - len(self.holdout_views) < self.num_views:
            held = f" once {len(self.holdout_views)} are held out" if self.holdout_views else ""
            raise InputError(cam_file.path, f"has {len(cameras)} views, fewer than num_views={self.num_views}{held}")
        if self.normalize.enabled:
            rig = normalize_rig(cameras.c2w, cameras.intrinsics, self.normalize, cam_file.up, cam_file.path)
            cameras = Cameras(rig.c2w, rig.intrinsics, cameras.width, cameras.height)
        return cameras

    def choose_views(self, cameras: Cameras, gen: torch.Generator | None, source) -> list[int]:
        """``num_views`` view ids, inputs first (each group sorted in evaluation, as FaceLift does), none of them
        held out; in evaluation the held-out views follow as extra targets.

        With ``input_views`` the inputs are those ids and the targets come from the other views, the first ones
        (``fixed``) or drawn (``random``)."""
        chosen = self._choose_views(cameras, gen, source)
        return chosen + self.holdout_views if self.evaluation else chosen

    def _choose_views(self, cameras: Cameras, gen: torch.Generator | None, source) -> list[int]:
        total, n_in = len(cameras), self.num_input_views
        pool = torch.tensor([i for i in range(total) if i not in self.holdout_views], dtype=torch.long)  # ids
        if self.input_views is not None:
            if max(self.input_views) >= total:
                raise InputError(source, f"input_views {self.input_views} name views beyond its {total} views")
            inputs = torch.tensor(self.input_views)
            others = pool[~torch.isin(pool, inputs)]
            order = torch.cat([inputs, others if self.view_sampling == "fixed"
                               else others[torch.randperm(len(others), generator=gen)]])
        elif self.view_sampling == "fixed":
            return pool[:self.num_views].tolist()
        else:
            order = pool[torch.randperm(len(pool), generator=gen)]
        inputs = order[:n_in]
        if self.maximize_view_overlap:
            directions = F.normalize(cameras.centers, dim=-1)  # [V, 3] from the world origin (the subject)
            closeness = (directions @ directions[inputs].T).amax(dim=1)  # [V] cosine to the nearest input
            ok = closeness >= math.cos(math.radians(self.view_overlap_angle))
            ok[inputs] = False
            ok[self.holdout_views] = False
            candidates = ok.nonzero().flatten()
            need = self.num_views - n_in
            if len(candidates) < need:
                raise InputError(source, f"only {len(candidates)} views lie within {self.view_overlap_angle} deg of "
                                         f"inputs {inputs.tolist()}, {need} needed (maximize_view_overlap)")
            targets = candidates[torch.randperm(len(candidates), generator=gen)[:need]]
        else:
            targets = order[n_in:self.num_views]
        if self.evaluation:
            inputs, targets = inputs.sort().values, targets.sort().values
        return torch.cat([inputs, targets]).tolist()

    def draw_background(self, gen: torch.Generator | None) -> Tensor:  # [3]
        if self.background == "random":
            return torch.rand(3, generator=gen)
        return torch.tensor(self.background, dtype=torch.float32)


def _check_background(value) -> tuple[float, float, float] | str:
    if isinstance(value, str):
        if value == "random" or value in BACKGROUNDS:
            return BACKGROUNDS.get(value, value)
    elif isinstance(value, (int, float)) and 0 <= value <= 1:
        return (float(value),) * 3
    raise ValueError(f"background_color must be one of {sorted(BACKGROUNDS) + ['random']} or a grey level in "
                     f"[0, 1], got {value!r}")


def _as_dataclass(cls, value, **defaults):
    """A config node (mapping, DictConfig) or None -> the dataclass; unknown keys are an error."""
    if isinstance(value, cls):
        return value
    if value is None:
        return cls(**defaults)
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    try:
        return cls(**value)
    except TypeError as err:
        raise ValueError(f"bad keys for {cls.__name__}: {err}") from None
