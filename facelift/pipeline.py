"""Inference: photo -> (crop, background removal) -> MVDiffusion -> GS-LRM -> cleaned Gaussians -> files.

A sample folder (images/ + opencv_cameras.json) skips the first two stages: its posed views, rig-normalized as the
training data are, go to GS-LRM directly (the mouse project's inference case).
Per input, in ``<output_dir>/<name>/``: input.png (the preprocessed photo; a sample folder's first view),
multiview.png (GS-LRM's input views side by side), output.png (the saved Gaussians rendered from those views'
cameras), gaussians.ply (3DGS layout), turntable.mp4 (FaceLift's orbit) and summary.json (settings, checkpoint
hashes, preprocessing and filtering reports, seconds per stage). `run_inference` drives a `conf/infer.yaml` run.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, replace
from contextlib import nullcontext
from functools import partial
from importlib import metadata
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm

from facelift.atomic import write_json
from facelift.cameras import Cameras
from facelift.data.camera_json import CAMERA_FILE, read_camera_file
from facelift.data.image_ops import square_padding
from facelift.data.multiview import MultiViewDataset
from facelift.data.rig import RigNormalization, normalize_rig
from facelift.errors import ConfigError, InputError
from facelift.gaussians import GaussianFilter, Gaussians, save_ply
from facelift.image_io import image_grid, to_uint8, write_image
from facelift.models.gslrm import GSLRM, GSLRMConfig
from facelift.models.gslrm.checkpoint import load_gslrm as load_gslrm_file
from facelift.models.mvdiffusion import MVDiffusionPipeline, load_pipeline
from facelift.models.mvdiffusion.loading import HOW_TO_GET as MVDIFFUSION_HOW_TO_GET
from facelift.models.mvdiffusion.loading import PROMPT_EMBEDS_HOW_TO_GET
from facelift.preprocess import (Preprocessor, PreprocessSettings, face_detector_problem, needs_background_model,
                                 u2net_model)
from facelift.render import render
from facelift.render.turntable import angle_labels, orbit_cameras, ring_cameras, turntable_chunks
from facelift.progress import ShownStageClock, progress
from facelift.stages import BackgroundWrites, StageClock, resolve_device
from facelift.viewer import VIEW_CAMERAS, write_view_cameras
from facelift.views import Views
from facelift.weights import WeightPath, raise_if_missing, sha256_of

log = logging.getLogger("facelift")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # files a folder input processes
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
FACELIFT_AZIMUTHS_DEG = (180.0, 225.0, 270.0, 315.0, 0.0, 90.0)  # utils_folder/opencv_cameras.json, file order
# PNGs are written on helper threads while the GPU goes on; at zlib level 6 a busy 3072x512 picture outlasted the GPU
# work (output.png of random weights on the H100 host: 1.1 s at level 6, 0.3 s at level 1)
write_png = partial(write_image, png_compress_level=1)
GSLRM_FILE = "ckpt_0000000000021125.pt"  # FaceLift's released GS-LRM checkpoint
GSLRM_HOW_TO_GET = (f"download FaceLift's checkpoints/gslrm/{GSLRM_FILE} from the Hugging Face repo wlyu/OpenFaceLift "
                    "there, or point gslrm.ckpt at a checkpoint written by train.py")
UNET_DIR_HOW_TO_GET = ("point mvdiffusion.unet_dir at the unet/ folder a train.py run exported (<run>/unet), or set "
                       "it to null to use <mvdiffusion.ckpt>/unet")


# ----------------------------------------------------------------------------------------- rigs
def facelift_inference_cameras() -> Cameras:
    """FaceLift's 6 inference cameras [6] at 512², in its file's order: Z-up ring at elevation 0, distance 2.7,
    hfov 50 deg (fx = fy = 548.99, cx = cy = 256), looking at the origin."""
    return ring_cameras(FACELIFT_AZIMUTHS_DEG, 512, elevation_deg=0.0, dtype=torch.float64)


def square_cameras(cameras: Cameras, size: int, resize_mode: str) -> Cameras:
    """Cameras for the views made square at ``size`` as the data layer does (pad centred, or stretch)."""
    if resize_mode == "pad" and cameras.width != cameras.height:
        cameras = cameras.padded(*square_padding(cameras.width, cameras.height))
    return cameras.resized(size, size)


def generated_view_rig(rig: DictConfig, size: int) -> tuple[Cameras, dict]:
    """The cameras [V] of MVDiffusion's views (in its view order) at ``size``², normalized if the rig says so."""
    if rig.cameras is None:
        cameras, up, source = facelift_inference_cameras(), None, "FaceLift inference cameras (built in)"
    else:
        cam_file = read_camera_file(rig.cameras, need_file_path=False)
        cameras, up, source = cam_file.cameras, cam_file.up, str(cam_file.path)
    order = [int(i) for i in rig.view_order]
    if any(not 0 <= i < len(cameras) for i in order):
        raise InputError(source, f"rig.view_order {order} names frames outside its {len(cameras)} cameras")
    cameras = cameras[torch.tensor(order)]
    normalization = RigNormalization(**OmegaConf.to_container(rig.normalize_cameras, resolve=True))
    report = None
    if normalization.enabled:
        norm = normalize_rig(cameras.c2w, cameras.intrinsics, normalization, up, source)
        cameras, report = Cameras(norm.c2w, norm.intrinsics, cameras.width, cameras.height), norm.report.to_dict()
    cameras = square_cameras(cameras, size, rig.resize_mode).to(torch.float32)
    return cameras, {"cameras": source, "view_order": order, "normalization": report}


def load_sample_views(folder: Path, rig: DictConfig, input_views, size: int, mask_threshold: float
                      ) -> tuple[Views, dict]:
    """A sample folder's views (``input_views``, or all) as GS-LRM input `Views` [1, V] at ``size``², through the
    training data path (alpha or near-white mask, white background, pad to square, rig normalization)."""
    cam_file = read_camera_file(folder / CAMERA_FILE)
    chosen = list(range(len(cam_file.frames))) if input_views is None else [int(i) for i in input_views]
    normalization = RigNormalization(**OmegaConf.to_container(rig.normalize_cameras, resolve=True))
    try:
        dataset = MultiViewDataset([folder], num_views=len(chosen), num_input_views=len(chosen), image_size=size,
                                   resize_mode=rig.resize_mode, background_color="white",
                                   mask_threshold=mask_threshold, view_sampling="fixed", input_views=chosen,
                                   normalize_cameras=normalization, evaluation=True)
    except ValueError as err:
        raise InputError(cam_file.path, f"gslrm.input_views: {err}") from None
    views = dataset.load(0)
    report = None
    if normalization.enabled:  # the dataset normalized the rig already; this repeats the pure function for its report
        report = normalize_rig(cam_file.cameras.c2w, cam_file.cameras.intrinsics, normalization, cam_file.up,
                               cam_file.path).report.to_dict()
    return views, {"cameras": str(cam_file.path), "views": views.index[0, :, 0].tolist(), "normalization": report}


# ----------------------------------------------------------------------------------------- models
def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {sorted(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]


def _check_random(allowed: bool, key: str) -> None:
    if not allowed:
        raise ConfigError("allow_random_init", "false", f"{key} builds a model with RANDOM weights; add "
                          "allow_random_init=true to mean it (tests and benchmarks only)")


def gslrm_weights(cfg: DictConfig) -> WeightPath:
    """The GS-LRM checkpoint ``cfg.ckpt`` (download advice only where the path names FaceLift's file)."""
    return WeightPath("GS-LRM checkpoint", cfg.ckpt, GSLRM_HOW_TO_GET, "gslrm.ckpt", expected_name=GSLRM_FILE)


def mvdiffusion_weights(cfg: DictConfig) -> list[WeightPath]:
    """The MVDiffusion pipeline folder, its prompt embeddings and, when set, the UNet folder used instead."""
    weights = [WeightPath("MVDiffusion pipeline folder", cfg.ckpt, MVDIFFUSION_HOW_TO_GET, "mvdiffusion.ckpt",
                          folder=True, expected_name="pipeckpts"),
               WeightPath("MVDiffusion per-view prompt embeddings", cfg.prompt_embeds, PROMPT_EMBEDS_HOW_TO_GET,
                          "mvdiffusion.prompt_embeds", expected_name="clr_embeds.pt")]
    if cfg.unet_dir:
        weights.append(WeightPath("MVDiffusion UNet folder", cfg.unet_dir, UNET_DIR_HOW_TO_GET,
                                  "mvdiffusion.unet_dir", folder=True))
    return weights


def check_run(cfg: DictConfig, items: list[tuple[str, Path]]) -> None:
    """Before any model loads: random weights only when asked for explicitly, and every weight the inputs will
    use present; all the missing ones are named in one message (a newcomer learns everything in one run)."""
    photos = [path for kind, path in items if kind == "image"]  # sample folders skip MVDiffusion and preprocessing
    if cfg.turntable.frames < 0:
        raise ConfigError("turntable.frames", cfg.turntable.frames, "must be >= 0 (0: no turntable.mp4)")
    for key in ("gslrm.random", "mvdiffusion.random"):
        if OmegaConf.select(cfg, key) is not None and (key.startswith("gslrm") or photos):
            _check_random(cfg.allow_random_init, key)
    weights = [gslrm_weights(cfg.gslrm)] if cfg.gslrm.get("random") is None else []
    if photos and cfg.mvdiffusion.get("random") is None:
        weights += mvdiffusion_weights(cfg.mvdiffusion)
    settings = preprocess_settings(cfg)
    if any(needs_background_model(path, settings) for path in photos):
        weights.append(u2net_model(settings.u2net_home))
    problems = [problem for weight in weights if (problem := weight.problem()) is not None]
    if photos and settings.crop == "face" and (problem := face_detector_problem()) is not None:
        problems.append(problem)
    raise_if_missing(problems)


def preprocess_settings(cfg: DictConfig) -> PreprocessSettings:
    return PreprocessSettings(size=cfg.image_size, crop=cfg.rig.crop if cfg.auto_crop else "none",
                              background=cfg.background, u2net_home=cfg.paths.u2net_home,
                              mask_threshold=cfg.mask_threshold, face_min_confidence=cfg.face_min_confidence,
                              foreground_fraction=cfg.rig.foreground_fraction, max_side=cfg.max_input_side,
                              min_side=cfg.min_input_side)


def load_gslrm(cfg: DictConfig, allow_random_init: bool) -> tuple[GSLRM, dict]:
    """GS-LRM from ``cfg.ckpt`` (architecture read from the file), or random from ``cfg.random`` fields."""
    if cfg.get("random") is not None:
        _check_random(allow_random_init, "gslrm.random")
        config = replace(GSLRMConfig(**cfg.random), gradient_checkpointing=False,
                         attention_backend=cfg.attention_backend)
        log.warning("GS-LRM with RANDOM weights (gslrm.random, allow_random_init)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return GSLRM(config).eval(), {"random": True, "config": asdict(config)}
    path = gslrm_weights(cfg).require()
    net, layout = load_gslrm_file(path, gradient_checkpointing=False, attention_backend=cfg.attention_backend)
    return net, {"path": str(path), "sha256": sha256_of(path), "layout": layout, "config": asdict(net.config)}


def load_mvdiffusion(cfg: DictConfig, allow_random_init: bool, dtype: torch.dtype) -> tuple[MVDiffusionPipeline, dict]:
    """The MVDiffusion pipeline from the local folder ``cfg.ckpt``, or random from ``cfg.random`` (a
    conf/model/pipeline file such as random_tiny)."""
    name = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}[dtype]
    if cfg.get("random") is not None:
        _check_random(allow_random_init, "mvdiffusion.random")
        return hydra.utils.instantiate(cfg.random, dtype=name), {"random": True}
    pipe = load_pipeline(cfg.ckpt, cfg.prompt_embeds, cfg.unet_dir, dtype=name)
    info = {"path": str(cfg.ckpt), "sha256": sha256_of(cfg.ckpt),
            "prompt_embeds": {"path": str(cfg.prompt_embeds), "sha256": sha256_of(cfg.prompt_embeds)}}
    if cfg.unet_dir:
        info["unet_dir"] = {"path": str(cfg.unet_dir), "sha256": sha256_of(cfg.unet_dir)}
    return pipe, info


# ----------------------------------------------------------------------------------------- one input
class InferenceRunner:
    """The models and settings of one run; `image` and `sample` each process one input into its folder."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_precision(cfg.precision, self.device)
        self.size = cfg.model_size or cfg.image_size
        start = time.perf_counter()
        self.gslrm, info = load_gslrm(cfg.gslrm, cfg.allow_random_init)
        self.gslrm.to(self.device)  # fp32 weights under autocast, as FaceLift runs it
        self.checkpoints = {"gslrm": info}
        self.load_seconds = {"gslrm": round(time.perf_counter() - start, 3)}
        self._mvdiffusion: MVDiffusionPipeline | None = None  # loaded for the first photo only
        self._rig: tuple[Cameras, dict] | None = None
        self.preprocessor = Preprocessor(preprocess_settings(cfg), self.device)
        self.filter = GaussianFilter.from_mapping(OmegaConf.to_container(cfg.filter, resolve=True))
        t = cfg.turntable
        self.num_stages = 6 + 2 * (t.frames > 0)  # per input: preprocess or load_views, then those of the Gaussians
        self.orbit = orbit_cameras(t.frames, t.size, radius=t.radius, elevation_deg=t.elevation_deg,
                                   hfov_deg=t.hfov_deg)

    def mvdiffusion(self) -> MVDiffusionPipeline:
        if self._mvdiffusion is None:
            start = time.perf_counter()
            pipe, self.checkpoints["mvdiffusion"] = load_mvdiffusion(self.cfg.mvdiffusion, self.cfg.allow_random_init,
                                                                     self.dtype)
            pipe.to(self.device)  # already in the run's precision
            if self.cfg.mvdiffusion.compile:
                pipe.speed_up()
            self._mvdiffusion = pipe
            self.load_seconds["mvdiffusion"] = round(time.perf_counter() - start, 3)
        return self._mvdiffusion

    def rig(self) -> tuple[Cameras, dict]:
        if self._rig is None:
            self._rig = generated_view_rig(self.cfg.rig, self.size)
        return self._rig

    def image(self, path: Path, out: Path) -> dict:
        """One photo -> every output file in ``out``; returns the summary."""
        cfg, clock = self.cfg, ShownStageClock(self.device, path.name, self.num_stages)
        with clock("preprocess"):
            pre = self.preprocessor(path)
        self._note_preprocess_weights(pre.report.mask_source, pre.report.crop)
        pipe = self.mvdiffusion()
        cameras, rig_info = self.rig()
        if pipe.num_views != len(cameras):
            raise InputError(rig_info["cameras"], f"MVDiffusion makes {pipe.num_views} views but rig.view_order "
                                                  f"names {len(cameras)} cameras")
        # PNGs and the PLY are encoded on helper threads while the GPU runs the next stage: after MVDiffusion,
        # file writing is most of the time left
        with BackgroundWrites() as files:
            files.submit(clock.timed, "input_png", write_png, out / "input.png", to_uint8(pre.image))
            with clock("mvdiffusion"):
                views = pipe(pre.image, num_inference_steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                             eta=cfg.eta, seed=cfg.seed, height=self.size, width=self.size,
                             steps_progress=partial(progress, desc="multiview", unit="step", leave=False)
                             ).float()  # [1, V, 3, S, S]
            v = views.shape[1]
            index = torch.stack([torch.arange(v), torch.zeros(v, dtype=torch.long)], dim=-1)[None]  # [1, V, 2]
            batch = Views(views, torch.ones_like(views[:, :, :1]), cameras.to(views.device)[None],
                          index.to(views.device))
            summary = {"mode": "image", "preprocess": asdict(pre.report), "rig": rig_info}
            return self._reconstruct_and_write(path, batch, out, clock, summary, files)

    def sample(self, folder: Path, out: Path) -> dict:
        """One sample folder of posed views -> every output file in ``out`` (no MVDiffusion); returns the summary."""
        clock = ShownStageClock(self.device, folder.name, self.num_stages)
        with clock("load_views"):
            views, rig_info = load_sample_views(folder, self.cfg.rig, self.cfg.gslrm.input_views, self.size,
                                                self.cfg.mask_threshold)
        with BackgroundWrites() as files:
            files.submit(clock.timed, "input_png", write_png, out / "input.png", to_uint8(views.images[0, 0]))
            summary = {"mode": "sample_folder", "rig": rig_info}
            return self._reconstruct_and_write(folder, views, out, clock, summary, files)

    @torch.inference_mode()
    def reconstruct(self, views: Views) -> Gaussians:
        """GS-LRM on ``views`` [1, V] under autocast to the run's precision -> float32 Gaussians [1, N]."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return self.gslrm(views.to(self.device)).to(torch.float32)

    def _reconstruct_and_write(self, source: Path, views: Views, out: Path, clock: StageClock, summary: dict,
                               files: BackgroundWrites) -> dict:
        from facelift.render.video import Mp4Stream  # needs imageio-ffmpeg; the rest of this module does not

        cfg, backend, t = self.cfg, self.cfg.render_backend, self.cfg.turntable
        files.submit(clock.timed, "multiview_png", write_png, out / "multiview.png", image_grid(views.images[0]))
        # ffmpeg starts now, while GS-LRM runs; it encodes each turntable chunk while the next one renders
        video = Mp4Stream(out / "turntable.mp4", t.size, t.size, t.fps, t.crf) if t.frames > 0 else None
        with video or nullcontext():
            with clock("gslrm"):
                predicted = self.reconstruct(views)  # [1, N]
            with clock("filter"):
                gaussians = predicted.filtered(self.filter, views.cameras.centers[0].to(self.device))
            if gaussians.num_gaussians == 0:
                raise InputError(source, f"all {predicted.num_gaussians} Gaussians were removed by the filter "
                                           "settings; relax filter.*")
            with clock("render_views"):  # the PLY (the longest write) starts first
                files.submit(clock.timed, "ply", save_ply, out / "gaussians.ply", gaussians.to("cpu"))
                files.submit(write_view_cameras, out / VIEW_CAMERAS, views.cameras[0])  # scripts/view.py's frusta
                rgb = render(gaussians, views.cameras.to(self.device), 1.0, backend).rgb[0]  # [V, 3, S, S]
                files.submit(clock.timed, "output_png", write_png, out / "output.png", image_grid(rgb))
            if video is not None:  # turntable.frames=0: no video at all
                with clock("turntable_render"):  # includes handing each chunk of frames to the encoder
                    labels = angle_labels(t.frames) if t.angle_label else None
                    for frames in turntable_chunks(gaussians, self.orbit, 1.0, backend, labels=labels):
                        # frames: [<=16, 3, T, T]
                        video.add(frames)
                with clock("mp4"):  # the encoder finishing the frames it still holds
                    video.finish()
        with clock("write_wait"):  # the PNGs and PLY still being written on the helper threads
            files.wait()  # a failed write raises here
        clock.stop()
        summary = {"input": str(source), **summary,
            "gaussians": {"predicted": predicted.num_gaussians, "kept": gaussians.num_gaussians,
                          "filtered_out": predicted.num_gaussians - gaussians.num_gaussians,
                          "filter": asdict(self.filter)},
            "timings_s": clock.seconds, "writes_s": clock.background, "ended_at_s": clock.ended_at,
            "model_load_s": dict(self.load_seconds), "checkpoints": dict(self.checkpoints),
            "settings": settings_of(cfg), "environment": environment(self.device, self.dtype),
            "outputs": ["input.png", "multiview.png", "output.png", "gaussians.ply", VIEW_CAMERAS,
                        *(["turntable.mp4"] if video is not None else []), "summary.json"]}
        summary = json.loads(json.dumps(summary))  # what the file holds (tuples become lists)
        write_json(out / "summary.json", summary)
        return summary

    def _note_preprocess_weights(self, mask_source: str, crop: str) -> None:
        """Record the preprocessing weights a photo used (rembg's model file, the MTCNN wheel), once each."""
        if mask_source == "rembg" and "u2net" not in self.checkpoints:
            path = Path(self.cfg.paths.u2net_home) / "u2net.onnx"
            self.checkpoints["u2net"] = {"path": str(path), "sha256": sha256_of(path)}
        if crop == "face" and "mtcnn" not in self.checkpoints:
            self.checkpoints["mtcnn"] = {"package": "facenet-pytorch", "version": metadata.version("facenet-pytorch")}


def settings_of(cfg: DictConfig) -> dict:
    """The run's resolved config without the machine-specific ``paths`` (checkpoint paths appear resolved)."""
    return {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v
            for k, v in cfg.items() if k not in ("paths", "hydra")}


def environment(device: torch.device, dtype: torch.dtype) -> dict:
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
            "precision": str(dtype).removeprefix("torch."), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version()}


# ----------------------------------------------------------------------------------------- a run
def list_inputs(source: Path) -> list[tuple[str, Path]]:
    """``("image" | "sample", path)`` for every input ``source`` names, in sorted order."""
    if not source.exists():
        raise InputError(source, "not found (input=)")
    if source.is_file():
        return [("image", source)]
    if (source / CAMERA_FILE).is_file():
        return [("sample", source)]
    items, ignored = [], []
    for child in sorted(source.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() and (child / CAMERA_FILE).is_file():
            items.append(("sample", child))
        elif child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
            items.append(("image", child))
        else:
            ignored.append(child.name)
    if ignored:
        log.info("%s: ignoring %d entries that are neither images (%s) nor sample folders: %s", source,
                 len(ignored), " ".join(IMAGE_SUFFIXES), ", ".join(ignored[:10]))
    if not items:
        raise InputError(source, f"holds no images ({' '.join(IMAGE_SUFFIXES)}) and no sample folders")
    return items


def output_names(items: list[tuple[str, Path]]) -> list[str]:
    """One folder name per input: the file's stem, or its whole name where two inputs share a stem."""
    stems = [p.stem if kind == "image" else p.name for kind, p in items]
    return [p.name.replace(".", "_") if stems.count(s) > 1 else s for s, (_, p) in zip(stems, items)]


def run_inference(cfg: DictConfig) -> list[dict]:
    """Process every input of ``cfg.input``; returns the summaries. A single input's problem raises its
    `InputError`; a folder carries on past bad inputs and raises one `InputError` listing them at the end."""
    if OmegaConf.is_missing(cfg, "input"):
        raise ConfigError("input", "???", "no input given; add input=PATH (a photo, a folder of photos and/or sample "
                                          "folders, or one sample folder)")
    source, out_root = Path(cfg.input), Path(cfg.output_dir)
    items = list_inputs(source)
    check_run(cfg, items)
    single = source.is_file() or (source / CAMERA_FILE).is_file()  # not a folder of inputs
    runner = InferenceRunner(cfg)
    summaries, failures = [], []
    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        for (kind, path), name in zip(items if single else progress(items, desc="infer", unit="input"),
                                      output_names(items)):
            try:
                summary = (runner.image if kind == "image" else runner.sample)(path, out_root / name)
            except InputError as err:
                if single:
                    raise
                failures.append(str(err))
                log.error("failed: %s", err)
                continue
            summaries.append(summary)
            log.info("%s -> %s (%d Gaussians kept of %d; %.2f s)", path, out_root / name,
                     summary["gaussians"]["kept"], summary["gaussians"]["predicted"], summary["timings_s"]["total"])
    log.info("results: %s (%d done, %d failed)", out_root, len(summaries), len(failures))
    if failures:
        raise InputError(source, f"{len(failures)} of {len(items)} inputs failed: " + " | ".join(failures))
    return summaries
