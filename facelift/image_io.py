"""The one image I/O module: read any common image file as float RGB(A) in [0, 1], write PNGs atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from torch import Tensor

from facelift.atomic import atomic_path
from facelift.errors import InputError

Image.MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs, allow 6000x4000 photos and larger


def read_image(path: str | Path, min_size: int = 2) -> Tensor:
    """Read an image as ``[C, H, W]`` float32 in [0, 1]: C = 4 when the file has alpha, else 3.

    Grayscale, palette and 16-bit files are converted; a missing, truncated, non-image or tiny file raises
    `InputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            arr = _to_float_array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(path, f"not a readable image ({type(err).__name__}: {err})") from None
    if min(arr.shape[:2]) < min_size:
        raise InputError(path, f"image is {arr.shape[1]}x{arr.shape[0]} pixels, too small to use")
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def has_alpha_channel(path: str | Path) -> bool | None:
    """Whether the file stores an alpha channel, from its header alone (no pixels decoded); None if unreadable."""
    try:
        with Image.open(path) as im:
            return _has_alpha(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _to_float_array(im: Image.Image) -> np.ndarray:  # [H, W, 3|4] float32 in [0, 1]
    has_alpha = _has_alpha(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: keep the precision, then scale
        a = np.asarray(im, dtype=np.float32)
        a = a / (65535.0 if a.max() > 255 or im.mode.startswith("I;16") else 255.0)
        return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=-1)
    im = im.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0


def composite(rgba: Tensor, background: Tensor | float | tuple[float, float, float]) -> Tensor:
    """RGBA ``[..., 4, H, W]`` over a background colour -> RGB ``[..., 3, H, W]``; RGB passes through."""
    if rgba.shape[-3] == 3:
        return rgba
    bg = torch.as_tensor(background, dtype=rgba.dtype, device=rgba.device)
    bg = bg.reshape(*bg.shape, 1, 1) if bg.dim() >= 1 else bg
    rgb, alpha = rgba[..., :3, :, :], rgba[..., 3:, :, :]
    return rgb * alpha + bg * (1 - alpha)


def to_uint8(image: Tensor) -> np.ndarray:
    """``[..., C, H, W]`` float in [0, 1] -> ``[..., H, W, C]`` uint8 (rounded, clamped), converted where the tensor
    lives (on a GPU, a quarter of the bytes then cross to the host)."""
    pixels = image.detach().float().clamp(0, 1).mul_(255).round_().to(torch.uint8)  # one float temporary, not four
    return pixels.movedim(-3, -1).contiguous().cpu().numpy()


def image_grid(*rows: Tensor) -> Tensor:
    """Rows of views ``[V_i, 3, H, W]`` -> one ``[3, sum H, max(V_i) W]`` picture on the CPU (short rows padded
    white); one row is the views side by side."""
    width = max(r.shape[0] for r in rows)
    lines = []
    for r in rows:
        r = r.detach().float().clamp(0, 1).cpu()
        if r.shape[0] < width:
            r = torch.cat([r, r.new_ones(width - r.shape[0], *r.shape[1:])])
        lines.append(torch.cat(list(r), dim=-1))  # [3, H, V*W]
    return torch.cat(lines, dim=-2)


def label_image(image: Tensor, text: str, height: int | None = None) -> Tensor:
    """``image`` ``[..., 3, H, W]`` float in [0, 1] with ``text`` in white on a darkened box in its top-left corner
    (a copy; every pixel outside the box is unchanged). ``height``: the text's pixel size (default ~1/16 of H, at
    least 8: small on a 512² frame, still legible on a 32² one); the box is clipped to the image."""
    h, w = image.shape[-2:]
    size = height or max(8, round(h / 16))
    font = ImageFont.load_default(size=size)  # Pillow's own font: no font file to find on the machine
    pad = max(1, size // 4)
    _, _, right, bottom = font.getbbox(text)
    box_w, box_h = min(w, right + 2 * pad), min(h, bottom + 2 * pad)
    ink = Image.new("L", (box_w, box_h), 0)
    ImageDraw.Draw(ink).text((pad, pad), text, fill=255, font=font)
    alpha = torch.from_numpy(np.asarray(ink, dtype=np.float32) / 255).to(image.device, image.dtype)  # [h', w']
    out = image.clone()
    box = out[..., :box_h, :box_w]
    box.copy_(0.45 * box * (1 - alpha) + alpha)  # darkened (readable on white and on colour), text blended in white
    return out


def write_image(path: str | Path, image: Tensor | np.ndarray, png_compress_level: int = 6) -> Path:
    """Write a PNG (or any PIL format by suffix) atomically: a reader never sees a half-written file.

    ``image`` is ``[C, H, W]`` float in [0, 1] (C = 1, 3 or 4) or an ``[H, W(, C)]`` uint8 array.
    ``png_compress_level``: zlib's 0-9 (PIL's default 6); 1 encodes a busy picture ~3x faster for a slightly larger
    file.
    """
    path = Path(path)
    arr = to_uint8(image) if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    options = {"compress_level": png_compress_level} if path.suffix.lower() == ".png" else {}
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, **options)
    return path


def write_figure(fig, path: str | Path, dpi: int = 100, format: str | None = None) -> Path:
    """Save a matplotlib figure atomically (``format``: None takes it from the suffix) and close it, also when
    saving fails, so a long run that plots often holds no figures."""
    import matplotlib.pyplot as plt  # only where a figure exists: matplotlib is imported by its maker already

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=format, dpi=dpi)
    finally:
        plt.close(fig)
    return path
