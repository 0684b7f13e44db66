"""`Views`: the batch the data layer hands to every model — posed images of one or more objects."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facelift.cameras import Cameras


@dataclass
class Views:
    images: Tensor  # [B, V, 3, H, W] RGB in [0, 1], composited over the background colour
    masks: Tensor  # [B, V, 1, H, W] foreground in [0, 1]
    cameras: Cameras  # batch shape [B, V], sized like the images
    index: Tensor  # [B, V, 2] long: (view id within the sample, sample id in the dataset)
    background: Tensor | None = None  # [B, 3] colour the images were composited over (None: white)

    def __post_init__(self) -> None:
        b, v = self.images.shape[:2]
        h, w = self.images.shape[-2:]
        if tuple(self.cameras.batch_shape) != (b, v) or (self.cameras.width, self.cameras.height) != (w, h):
            raise ValueError(f"Views: cameras {tuple(self.cameras.batch_shape)} {self.cameras.width}x"
                             f"{self.cameras.height} do not match images {tuple(self.images.shape)}")

    @property
    def num_views(self) -> int:
        return self.images.shape[1]

    def select(self, idx) -> "Views":
        """A subset of the views of every sample: ``idx`` is a slice or a list/tensor of view positions."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(idx, dtype=torch.long, device=self.images.device)
        return Views(self.images[:, idx], self.masks[:, idx], self.cameras[:, idx], self.index[:, idx], self.background)

    def to(self, device) -> "Views":
        """On ``device``; from pinned memory (`pin_memory`) the copies are asynchronous, as the DataLoader's are."""
        nb = {"non_blocking": self.images.is_pinned()}
        bg = None if self.background is None else self.background.to(device, **nb)
        return Views(self.images.to(device, **nb), self.masks.to(device, **nb), self.cameras.to(device, **nb),
                     self.index.to(device, **nb), bg)

    def pin_memory(self) -> "Views":
        """Called by a DataLoader with ``pin_memory=True`` (page-locked host memory: faster, asynchronous uploads)."""
        bg = None if self.background is None else self.background.pin_memory()
        return Views(self.images.pin_memory(), self.masks.pin_memory(), self.cameras.pin_memory(),
                     self.index.pin_memory(), bg)

    def background_or_white(self) -> Tensor:  # [B, 3]
        if self.background is not None:
            return self.background
        return self.images.new_ones(self.images.shape[0], 3)

    @staticmethod
    def collate(samples: list["Views"]) -> "Views":
        """Stack per-sample Views (batch dim 1 each, as the datasets return them) into one batch."""
        bgs = [s.background_or_white() for s in samples]
        return Views(torch.cat([s.images for s in samples]), torch.cat([s.masks for s in samples]),
                     Cameras.cat([s.cameras for s in samples]), torch.cat([s.index for s in samples]), torch.cat(bgs))
