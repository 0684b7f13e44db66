"""One input photo -> the square image on white that MVDiffusion takes, the way FaceLift's inference prepares it.

Steps: read (any common format; grayscale / 16-bit converted) -> downscale to ``max_side`` -> foreground mask ->
crop -> composite on white at ``size``².
- Mask: the file's own alpha when it has a non-trivial one (background removal is skipped), else ``background``:
  ``rembg`` (its u2net model from a LOCAL file, ``u2net_home``/u2net.onnx: nothing is downloaded), ``threshold``
  (near-white is background: inputs already on white) or ``none`` (the whole image is foreground).
- Crop ``face`` (human): MTCNN (facenet-pytorch, whose wheel carries the weights) on the image composited on white;
  the largest face above ``face_min_confidence`` is scaled so that its box size (mean of width and height) becomes
  194.27 px and its centre lands on (251.83, 280.01) of a 512² canvas: FaceLift's training-set face statistics,
  scaled to ``size``. Crop ``mask`` (mouse): the foreground's bounding box is centred and its longer side scaled to
  ``foreground_fraction`` of the image. Crop ``none``: the whole image, padded to square (centred) and resized.
- Fallbacks, as FaceLift's, written to the report: no face found -> background removal only (crop ``none``);
  no foreground found -> the plain image resized (no mask).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facelift.data.image_ops import resize
from facelift.data.multiview import split_mask
from facelift.errors import MissingWeightsError
from facelift.image_io import composite, has_alpha_channel, read_image, to_uint8
from facelift.weights import WeightPath

log = logging.getLogger("facelift")

CROPS = ("face", "mask", "none")
BACKGROUNDS = ("rembg", "threshold", "none")
FACE_SIZE, FACE_CENTRE = 194.2749650813705, (251.83270369057132, 280.0133630862363)  # FaceLift, at 512²
MIN_FOREGROUND = 1e-3  # a mask covering less than this fraction of the image found nothing
U2NET_HOW_TO_GET = ("download u2net.onnx from the rembg project's GitHub release v0.0.0 into that folder (or set "
                    "paths.u2net_home), or use background=threshold for photos already on white")
FACENET_HOW_TO_GET = ("install it with `pip install --no-deps facenet-pytorch==2.6.0` (its wheel carries the MTCNN "
                      "weights; --no-deps because it pins old torch and numpy), or run with auto_crop=false")


@dataclass(frozen=True)
class PreprocessSettings:
    size: int = 512  # output side
    crop: str = "face"  # face | mask | none
    background: str = "rembg"  # rembg | threshold | none: how RGB inputs get a foreground mask
    u2net_home: str | None = None  # folder holding rembg's u2net.onnx
    mask_threshold: float = 0.98  # threshold background: every channel >= this is background
    face_min_confidence: float = 0.8  # faces below this MTCNN probability are ignored (FaceLift: 0.8)
    foreground_fraction: float = 0.8  # mask crop: the foreground box's longer side over the image side
    max_side: int = 2048  # inputs with a longer side are downscaled first
    min_side: int = 32  # inputs with a shorter side are refused

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")


@dataclass
class PreprocessReport:
    """What preprocessing found and did (written to summary.json)."""

    source_size: list[int]  # [width, height] of the file
    mask_source: str  # alpha | rembg | threshold | none
    crop: str  # the crop applied: face | mask | none
    fallback: str | None = None  # why the configured crop was not applied, if it was not
    working_size: list[int] | None = None  # [width, height] after the downscale to max_side
    face_box: list[float] | None = None  # [x0, y0, x1, y1] in working pixels
    face_confidence: float | None = None
    scale: float = 1.0  # working pixels -> output pixels
    foreground_fraction: float = 0.0  # of the working image, by the mask (alpha > 0.5)
    faces_found: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Preprocessed:
    image: Tensor  # [3, S, S] RGB in [0, 1] on white
    mask: Tensor  # [1, S, S] foreground in [0, 1]
    report: PreprocessReport


class Preprocessor:
    """Holds the face detector and the background-removal session, each built on first use."""

    def __init__(self, settings: PreprocessSettings, device: torch.device | str = "cpu"):
        self.settings, self.device = settings, torch.device(device)
        self._detector = None
        self._rembg = None

    def __call__(self, path: str | Path) -> Preprocessed:
        s = self.settings
        image = read_image(path, min_size=s.min_side)  # [3|4, H, W]; InputError names the file
        h, w = image.shape[-2:]
        report = PreprocessReport(source_size=[w, h], mask_source="none", crop="none")
        if max(h, w) > s.max_side:  # detection and matting cost grows with pixels; the output is size² anyway
            ratio = s.max_side / max(h, w)
            image = resize(image, max(1, round(w * ratio)), max(1, round(h * ratio)))
        report.working_size = [image.shape[-1], image.shape[-2]]
        rgba = self.foreground(image, report)  # [4, h, w] straight RGB + mask
        report.foreground_fraction = float((rgba[3] > 0.5).float().mean())
        if report.mask_source != "none" and report.foreground_fraction < MIN_FOREGROUND:
            report.fallback = f"no foreground found ({report.mask_source}): plain resize"
            report.mask_source = "none"
            rgba = torch.cat([rgba[:3], torch.ones_like(rgba[3:])])

        crop = s.crop if report.fallback is None else "none"
        placement = None
        if crop == "face":
            placement = self.face_placement(rgba, report)
            if placement is None:
                report.fallback = f"no face found (confidence > {s.face_min_confidence}): background removal only"
        elif crop == "mask":
            placement = mask_placement(rgba[3], s.size, s.foreground_fraction)
        report.crop = crop if placement is not None else "none"
        scale, src, dst = placement or whole_placement(rgba.shape[-1], rgba.shape[-2], s.size)
        report.scale = scale
        out = place(rgba, scale, src, dst, s.size)  # [4, S, S] premultiplied, zero outside the image
        image = (out[:3] + (1 - out[3:])).clamp(0, 1)  # over white
        return Preprocessed(image, out[3:].clamp(0, 1), report)

    # ------------------------------------------------------------------------------------- mask
    def foreground(self, image: Tensor, report: PreprocessReport) -> Tensor:
        """``[3|4, H, W]`` -> ``[4, H, W]``: straight RGB and a foreground mask."""
        if image.shape[0] == 4 and (image[3] < 1).any():
            report.mask_source = "alpha"
            return image
        rgb = image[:3]
        if image.shape[0] == 4:
            report.notes.append("the alpha channel is opaque everywhere: treated as an RGB image")
        method = self.settings.background
        if method == "threshold":
            rgb, mask = split_mask(rgb, self.settings.mask_threshold)
        elif method == "rembg":
            mask = self.rembg_mask(rgb)
        else:
            mask = torch.ones_like(rgb[:1])
        report.mask_source = method
        return torch.cat([rgb, mask])

    def rembg_mask(self, rgb: Tensor) -> Tensor:  # [1, H, W] in [0, 1]
        from PIL import Image  # rembg works on PIL images
        from rembg import remove

        mask = remove(Image.fromarray(to_uint8(rgb)), session=self.rembg_session(), only_mask=True)
        return torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None]

    def rembg_session(self):
        """rembg's u2net session from the local model file; U2NET_HOME points rembg at it (no download)."""
        if self._rembg is None:
            home = self.settings.u2net_home
            model = u2net_model(home).require()
            from rembg import new_session

            previous = os.environ.get("U2NET_HOME")
            os.environ["U2NET_HOME"] = str(model.parent.resolve())
            try:
                self._rembg = new_session("u2net", providers=onnx_providers(self.device))
            finally:
                if previous is None:
                    os.environ.pop("U2NET_HOME")
                else:
                    os.environ["U2NET_HOME"] = previous
            log.info("background removal: rembg u2net from %s", model)
        return self._rembg

    # ------------------------------------------------------------------------------------- face crop
    def face_placement(self, rgba: Tensor, report: PreprocessReport):
        """FaceLift's crop rule from the largest confident face, or None when there is none."""
        s = self.settings
        on_white = to_uint8(composite(rgba, 1.0))  # [H, W, 3] uint8: what MTCNN was run on in FaceLift
        boxes, probs = self.detector().detect(on_white)
        if boxes is None:
            return None
        faces = [(box, float(p)) for box, p in zip(boxes, probs) if p is not None and p > s.face_min_confidence]
        report.faces_found = len(faces)
        if not faces:
            return None
        box, prob = max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
        x0, y0, x1, y1 = (float(v) for v in box)
        report.face_box, report.face_confidence = [x0, y0, x1, y1], prob
        k = s.size / 512  # FaceLift's statistics are for 512² images
        scale = FACE_SIZE * k / (0.5 * ((x1 - x0) + (y1 - y0)))
        return scale, ((x0 + x1) / 2, (y0 + y1) / 2), (FACE_CENTRE[0] * k, FACE_CENTRE[1] * k)

    def detector(self):
        if self._detector is None:
            problem = face_detector_problem()
            if problem is not None:
                raise MissingWeightsError(problem)
            from facenet_pytorch import MTCNN

            # FaceLift's detector settings: smallest face 20 px, stage thresholds 0.6/0.7/0.7, pyramid factor 0.709
            self._detector = MTCNN(min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709, device=self.device)
        return self._detector


def face_detector_problem() -> str | None:
    """Why the MTCNN face detector cannot be built (its package is missing), or None."""
    try:
        import facenet_pytorch  # noqa: F401 - its wheel carries the MTCNN weights
    except ImportError:
        return f"face detection (auto_crop) needs facenet-pytorch, which is not installed; {FACENET_HOW_TO_GET}"
    return None


def u2net_model(u2net_home: str | Path | None) -> WeightPath:
    """rembg's u2net model file, as the config places it (``paths.u2net_home``/u2net.onnx)."""
    return WeightPath("rembg's u2net background-removal model",
                      None if u2net_home is None else Path(u2net_home) / "u2net.onnx", U2NET_HOW_TO_GET,
                      key="paths.u2net_home")


def needs_background_model(path: str | Path, settings: PreprocessSettings) -> bool:
    """Whether preprocessing ``path`` asks rembg for a mask: an RGB file under ``background=rembg`` (an alpha
    channel is used instead; judged from the header, so an all-opaque alpha is found only when the photo is read)."""
    return settings.background == "rembg" and has_alpha_channel(path) is False


def onnx_providers(device: torch.device) -> list[str]:
    """onnxruntime providers: CUDA when the pipeline runs on CUDA and this onnxruntime has it."""
    import onnxruntime

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# ----------------------------------------------------------------------------------------- geometry
Placement = tuple[float, tuple[float, float], tuple[float, float]]  # scale, source point, where it lands


def whole_placement(width: int, height: int, size: int) -> Placement:
    """The whole image, centred, its longer side filling the output (the shorter one padded)."""
    return size / max(width, height), (width / 2, height / 2), (size / 2, size / 2)


def mask_placement(mask: Tensor, size: int, fraction: float) -> Placement | None:
    """Centre the foreground box of ``mask`` [H, W] and scale its longer side to ``fraction`` of ``size``."""
    rows, cols = (mask > 0.5).any(1).nonzero()[:, 0], (mask > 0.5).any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return None
    y0, y1, x0, x1 = float(rows[0]), float(rows[-1]) + 1, float(cols[0]), float(cols[-1]) + 1
    return fraction * size / max(x1 - x0, y1 - y0), ((x0 + x1) / 2, (y0 + y1) / 2), (size / 2, size / 2)


def place(rgba: Tensor, scale: float, src: tuple[float, float], dst: tuple[float, float], size: int) -> Tensor:
    """Scale ``rgba`` [4, H, W] (straight colour) by ``scale`` about ``src`` and put that point on ``dst`` of a
    ``size``² canvas -> ``[4, size, size]`` with colour premultiplied by alpha; outside the image alpha is 0.

    Points are continuous pixel coordinates (pixel centres at +0.5, as `facelift.cameras`). Shrinking goes through
    an antialiased resize first; what remains (a scale near or above 1) is a bilinear resampling. An output pixel
    whose centre falls inside the image is fully covered (no darkened rim), one outside it is empty.
    """
    premult = torch.cat([rgba[:3] * rgba[3:], rgba[3:]])  # resample premultiplied: no dark fringes at the edge
    h, w = premult.shape[-2:]
    if scale < 1:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        premult = resize(premult, nw, nh)
        src, scale = (src[0] * nw / w, src[1] * nh / h), scale * w / nw
        h, w = nh, nw
    pix = torch.arange(size, dtype=torch.float32) + 0.5  # [S] output pixel centres
    x = (pix - dst[0]) / scale + src[0]  # source coordinates of each output column / row
    y = (pix - dst[1]) / scale + src[1]
    grid = torch.stack(torch.meshgrid(2 * y / h - 1, 2 * x / w - 1, indexing="ij")[::-1], dim=-1)  # [S, S, 2] (x, y)
    out = F.grid_sample(premult[None], grid[None], mode="bilinear", padding_mode="border", align_corners=False)[0]
    # border padding keeps the image's outer half-pixel at full strength; beyond the image itself: nothing
    inside = ((y >= 0) & (y <= h))[:, None] & ((x >= 0) & (x <= w))[None, :]  # [S, S]
    return out * inside
