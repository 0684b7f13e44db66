"""FaceLift's two geometric terms on the pixel-aligned Gaussians of the input views (0 in every released config).

Both read the Gaussians' positions laid out as the input images, ``xyz`` ``[B, V, 3, H, W]`` (Gaussian of pixel
(v, y, x) at ``xyz[:, v, :, y, x]``), and the rays of those pixels, ``origins``/``directions`` of the same shape.
"""

from __future__ import annotations

from torch import Tensor

POINTSDIST_TARGET_STD = 0.5  # spread FaceLift asks of the distances along each view's rays


def pixelalign_loss(xyz: Tensor, origins: Tensor, directions: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean distance of each Gaussian from its pixel's ray (the part of its offset orthogonal to the ray).

    The length along the ray is detached, so the gradient only pulls points sideways onto the ray.
    ``mask`` ``[B, V, 1, H, W]``: zero the distance of background pixels (the mean still runs over every pixel,
    as in FaceLift). With hard pixel alignment this is zero except where positions were clamped.
    """
    offset = xyz - origins  # [B, V, 3, H, W]
    along = (offset.detach() * directions).sum(dim=2, keepdim=True)  # [B, V, 1, H, W]
    distance = (offset - along * directions).norm(dim=2, keepdim=True)  # [B, V, 1, H, W]
    if mask is not None:
        distance = distance * mask
    return distance.mean()


def pointsdist_loss(xyz: Tensor, origins: Tensor) -> Tensor:
    """Pull each view's distances along the rays towards mean = the camera's distance from the world origin and
    std = 0.5, keeping their current pattern: the goal is the detached distances, standardised per view and
    rescaled; the loss is the mean squared difference to it."""
    distance = (xyz - origins).norm(dim=2, keepdim=True)  # [B, V, 1, H, W]
    camera_distance = origins.norm(dim=2, keepdim=True)  # [B, V, 1, H, W], one value per view
    d = distance.detach()
    mean, std = d.mean(dim=(2, 3, 4), keepdim=True), d.std(dim=(2, 3, 4), keepdim=True)  # [B, V, 1, 1, 1]
    goal = (d - mean) / (std + 1e-8) * POINTSDIST_TARGET_STD + camera_distance
    return ((distance - goal) ** 2).mean()
