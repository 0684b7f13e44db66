"""Pure-PyTorch differentiable Gaussian rasterizer: the CPU backend, numerically a twin of gsplat 1.5's "classic" mode.

Per pixel, Gaussians are composited front to back in camera-depth order:
``alpha = min(0.999, opacity * exp(-sigma))`` at the pixel centre (+0.5), skipped when below 1/255; a Gaussian whose
``T * (1 - alpha)`` would drop to 1e-4 or below ends the pixel and is itself left out (gsplat's exclusive rule).
Colour accumulates premultiplied (``sum w_i c_i``); the background is added with the final transmittance.

Memory is bounded: the image is cut into tiles, each Gaussian is listed in the tiles its screen box touches
(a superset of the pixels where it reaches 1/255), tiles are processed in groups of similar depth complexity and,
for deep tiles, in depth segments carrying the transmittance. Under autograd the blocks' [pixel x Gaussian]
intermediates are kept for the backward pass up to ``store`` elements a render (the small renders of tests and CPU
runs: no recomputation); past that each further block is checkpointed, so the backward pass recomputes it instead.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from facelift.cameras import Cameras
from facelift.gaussians import Gaussians
from facelift.render.projection import ALPHA_MIN, project
from facelift.render.sh import sh_to_rgb

MAX_ALPHA = 0.999  # a single Gaussian never makes a pixel fully opaque
T_MIN = 1e-4  # transmittance at which a pixel is done


def render_torch(gaussians: Gaussians, cameras: Cameras, background: Tensor, near: float, far: float,
                 tile_size: int | None = None, budget: int | None = None,
                 store: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``[B, N]`` Gaussians into cameras ``[B, V]`` over ``background`` ``[B, V, 3]``.

    Returns rgb ``[B, V, 3, H, W]``, alpha ``[B, V, 1, H, W]`` and expected depth ``[B, V, 1, H, W]``
    (``sum w_i z_i / alpha``; 0 where nothing was drawn). ``tile_size`` (px), ``budget`` (elements of one
    [pixel x Gaussian] block) and ``store`` (block elements a render keeps for backward instead of recomputing;
    about 50 bytes each) trade speed for memory, never the result. On CPU 4 px, 2^18 and 2^24 (~0.8 GB): against
    8 px with every block recomputed, forward + backward 1.9x faster on the tiny tests' renders and 1.5x at 128²
    (scripts/bench_render.py's test and mid scenes, 2 cores); on GPU 16 px, 2^26 (few kernel launches, about 4 GB
    of temporaries) and 0 (memory is the scarce resource there).
    """
    b, n = gaussians.means.shape[:2]
    v = cameras.batch_shape[1]
    height, width = cameras.height, cameras.width
    proj = project(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, cameras, near, far)
    img, gid = proj.visible.nonzero(as_tuple=True)  # [M] image (b * V + v) and Gaussian of each visible pair
    sample = torch.div(img, v, rounding_mode="floor")
    sh = gaussians.sh[sample, gid]  # [M, K, 3]
    dirs = None
    if gaussians.sh_degree > 0:  # view direction: camera centre -> Gaussian, as gsplat
        dirs = gaussians.means[sample, gid] - cameras.centers.reshape(b * v, 3)[img]
    feats = torch.cat([sh_to_rgb(sh, dirs), proj.depths[img, gid, None]], dim=-1)  # [M, 4] rgb + depth
    gpu = feats.is_cuda
    acc, trans = rasterize(img, proj.means2d[img, gid], proj.conics[img, gid], gaussians.opacities[sample, gid],
                           feats, proj.depths[img, gid], proj.radii[img, gid], b * v, width, height,
                           tile_size or (16 if gpu else 4), budget or (2**26 if gpu else 2**18),
                           (0 if gpu else 2**24) if store is None else store)
    acc = acc.reshape(b, v, height, width, 4).permute(0, 1, 4, 2, 3)  # [B, V, 4, H, W]
    trans = trans.reshape(b, v, 1, height, width)
    alpha = 1.0 - trans
    rgb = acc[:, :, :3] + trans * background[..., None, None]
    depth = acc[:, :, 3:] / alpha.clamp_min(1e-10)
    return rgb, alpha, depth


def rasterize(img: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor, depths: Tensor,
              radii: Tensor, num_images: int, width: int, height: int, tile_size: int,
              budget: int, store: int = 0) -> tuple[Tensor, Tensor]:
    """Composite M visible (image, Gaussian) pairs into ``num_images`` images.

    Inputs are per pair: image index ``[M]``, 2D mean ``[M, 2]``, conic ``[M, 3]``, opacity ``[M]``, features
    ``[M, C]``, depth ``[M]`` (for sorting) and screen radii ``[M, 2]``. Under autograd the first blocks, up to
    ``store`` [pixel x Gaussian] elements, keep their intermediates; later ones are checkpointed. Returns
    premultiplied feature sums ``[I, H, W, C]`` and final transmittance ``[I, H, W]``.
    """
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    per_image, pix = tiles_x * tiles_y, tile_size * tile_size
    order, tile_start, tile_count = _bin(img, means2d.detach(), depths.detach(), radii, tile_size, tiles_x, tiles_y,
                                         num_images * per_image)
    channels = feats.shape[-1]
    offsets = torch.arange(tile_size, device=feats.device, dtype=feats.dtype) + 0.5
    local = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), -1).reshape(pix, 2)  # [P, 2] (x, y)

    tiles = (tile_count > 0).nonzero()[:, 0]
    counts, by_depth = torch.sort(tile_count[tiles], descending=True)
    tiles, counts_list = tiles[by_depth], counts.tolist()
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opacities, feats))
    acc_parts, trans_parts, i = [], [], 0
    while i < len(counts_list):  # groups of tiles of similar depth: little padding
        depth_chunk = max(1, min(counts_list[i], budget // pix))
        group = tiles[i:i + max(1, budget // (pix * depth_chunk))]
        g_start, g_count = tile_start[group], tile_count[group]  # [G]
        in_image = group % per_image
        corner = torch.stack([in_image % tiles_x, torch.div(in_image, tiles_x, rounding_mode="floor")], -1)
        centres = corner[:, None].to(feats.dtype) * tile_size + local  # [G, P, 2] pixel centres
        acc = feats.new_zeros(len(group), pix, channels)
        trans = feats.new_ones(len(group), pix)
        done = torch.zeros(len(group), pix, dtype=torch.bool, device=feats.device)
        for k0 in range(0, counts_list[i], depth_chunk):  # depth segments, front to back
            if k0 > 0 and bool(done.all()):
                break  # every pixel of the group has terminated
            slot = k0 + torch.arange(depth_chunk, device=feats.device)  # [k]
            valid = slot < g_count[:, None]  # [G, k]
            pair = order[(g_start[:, None] + slot).clamp_max(len(order) - 1)]  # [G, k] index into the M pairs
            args = (centres, trans, done, valid, pair, means2d, conics, opacities, feats)
            store -= pair.numel() * pix  # this block's [G, P, k] elements
            recompute = grad and store < 0
            seg_acc, trans, done = checkpoint(_composite, *args, use_reentrant=False) if recompute else _composite(*args)
            acc = acc + seg_acc
        acc_parts.append(acc)
        trans_parts.append(trans)
        i += len(group)

    acc_tiles = feats.new_zeros(num_images * per_image, pix, channels)
    trans_tiles = feats.new_ones(num_images * per_image, pix)
    if acc_parts:
        acc_tiles = acc_tiles.index_copy(0, tiles, torch.cat(acc_parts))
        trans_tiles = trans_tiles.index_copy(0, tiles, torch.cat(trans_parts))
    return (_untile(acc_tiles, num_images, tiles_y, tiles_x, tile_size)[:, :height, :width],
            _untile(trans_tiles[..., None], num_images, tiles_y, tiles_x, tile_size)[:, :height, :width, 0])


@torch.no_grad()
def _bin(img: Tensor, means2d: Tensor, depths: Tensor, radii: Tensor, tile_size: int, tiles_x: int, tiles_y: int,
         num_tiles: int) -> tuple[Tensor, Tensor, Tensor]:
    """List every pair in each tile its screen box touches, front to back.

    Returns ``order`` (pair indices grouped by tile, depth-sorted within a tile), and per tile (image-major, then
    row, then column) the start in ``order`` and the count.
    """
    lo = torch.floor((means2d - radii) / tile_size)  # [M, 2] first tile (x, y)
    hi = torch.floor((means2d + radii) / tile_size) + 1  # exclusive
    limit = means2d.new_tensor([tiles_x, tiles_y])
    lo, hi = lo.clamp(min=0).minimum(limit).long(), hi.clamp(min=0).minimum(limit).long()
    span = hi - lo  # [M, 2]
    n_tiles = span[:, 0] * span[:, 1]  # [M]

    by_depth = torch.argsort(depths, stable=True)  # a stable sort by tile below keeps this order inside a tile
    n_tiles = n_tiles[by_depth]
    pair = torch.repeat_interleave(by_depth, n_tiles)  # [E] one entry per (pair, tile)
    first = torch.repeat_interleave(torch.cumsum(n_tiles, 0) - n_tiles, n_tiles)
    k = torch.arange(len(pair), device=pair.device) - first  # position inside the pair's box
    w = span[pair, 0]
    tx = lo[pair, 0] + k % w
    ty = lo[pair, 1] + torch.div(k, w, rounding_mode="floor")
    key = img[pair] * (tiles_x * tiles_y) + ty * tiles_x + tx
    key, perm = torch.sort(key, stable=True)
    count = torch.bincount(key, minlength=num_tiles)
    return pair[perm], torch.cumsum(count, 0) - count, count


def _composite(centres: Tensor, trans_in: Tensor, done_in: Tensor, valid: Tensor, pair: Tensor, means2d: Tensor,
               conics: Tensor, opacities: Tensor, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One block: G tiles x P pixels x k Gaussians (depth order), continuing from transmittance ``trans_in`` [G, P]
    and the pixels already terminated ``done_in`` [G, P]. Returns feature sums [G, P, C], transmittance, done.
    """
    mean = means2d[pair]  # [G, k, 2]
    a, b, c = conics[pair].unbind(-1)  # [G, k] each
    dx = mean[:, None, :, 0] - centres[:, :, None, 0]  # [G, P, k]
    dy = mean[:, None, :, 1] - centres[:, :, None, 1]
    sigma = 0.5 * (a[:, None] * dx * dx + c[:, None] * dy * dy) + b[:, None] * dx * dy
    alpha = (opacities[pair][:, None] * torch.exp(-sigma)).clamp_max(MAX_ALPHA)
    alpha = torch.where(valid[:, None] & (sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    with torch.no_grad():  # the Gaussian that would push T to <= 1e-4, and all behind it, are left out
        alive = (trans_in[..., None] * torch.cumprod(1 - alpha, -1) > T_MIN) & ~done_in[..., None]
    alpha = torch.where(alive, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1 - alpha, -1)  # [G, P, k] transmittance after each Gaussian
    before = trans_in[..., None] * torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], -1)
    acc = (alpha * before) @ feats[pair]  # [G, P, C]
    return acc, trans_in * trans[..., -1], ~alive[..., -1]


def _untile(x: Tensor, num_images: int, tiles_y: int, tiles_x: int, tile_size: int) -> Tensor:
    """``[I * ty * tx, P, C]`` tiles -> ``[I, ty * tile, tx * tile, C]`` images."""
    c = x.shape[-1]
    x = x.reshape(num_images, tiles_y, tiles_x, tile_size, tile_size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(num_images, tiles_y * tile_size, tiles_x * tile_size, c)
