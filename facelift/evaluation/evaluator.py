"""What `eval.py` does: reconstruct every sample of a split with a trained GS-LRM, batch by batch, score and report.

For the run: ``per_view.csv`` (one row per scored view: sample, view id, input or not, angle to the nearest input,
PSNR / SSIM / LPIPS), ``aggregate.md`` / ``aggregate.json`` (means over novel, input and all views, per camera, per
angle bin), ``psnr.png`` (PSNR per camera and against the angle) and ``metrics.json`` (per sample and view, the means
over novel and all views, the aggregates). For the first ``renders`` samples (``samples/<sample name>/``):
``renders.png`` (rows: inputs | targets | renders), ``gaussians.ply`` (pruned as FaceLift's inference does) and
``turntable.mp4`` + its contact sheet, each optional.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from facelift.atomic import write_json
from facelift.config_check import check_views
from facelift.data.datamodule import MultiViewDataModule
from facelift.errors import InputError
from facelift.evaluation.plot import plot_psnr
from facelift.evaluation.report import ViewRecord, aggregate, batch_records, record_json, write_aggregates, write_records_csv
from facelift.gaussians import GaussianFilter, save_ply
from facelift.image_io import image_grid, write_image
from facelift.render.video import save_turntable
from facelift.stages import BackgroundWrites, resolve_device
from facelift.systems.gslrm_system import GSLRMSystem, Reconstruction
from facelift.systems.metrics import ImageMetrics
from facelift.viewer import VIEW_CAMERAS, write_view_cameras
from facelift.views import Views
from facelift.weights import load_checkpoint

log = logging.getLogger("facelift")


def load_system(ckpt_path: str | Path, device: torch.device) -> tuple[GSLRMSystem, dict]:
    """The trained system (eval mode) and the data module hyper-parameters stored beside it."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found (ckpt=)")
    ckpt = load_checkpoint(path)  # weights_only: a checkpoint from elsewhere cannot run code
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise InputError(path, "is not a train.py checkpoint (no hyper_parameters / state_dict); convert official "
                               "GS-LRM weights with scripts/convert_checkpoint.py or use infer.py")
    hp = dict(ckpt["hyper_parameters"])
    # the weights come from this file; eval scores with its own metrics and needs no training loss (nor its VGGs)
    hp.update(init_ckpt=None, val_metrics=None, loss={"_target_": "facelift.losses.GSLRMLoss"})
    system = GSLRMSystem(**hp)
    system.load_state_dict(ckpt["state_dict"], strict=True)
    return system.to(device).eval(), ckpt.get("datamodule_hyper_parameters") or {}


def build_datamodule(saved: dict, cfg: DictConfig) -> MultiViewDataModule:
    """The data the checkpoint was trained on with ``cfg.data``'s non-null keys changed, or ``cfg.data`` itself when
    it is a whole data config (``+data=NAME``: it has a ``_target_``)."""
    given = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if v is not None}
    args = given if "_target_" in given else {**saved, **given}
    if "data_dir" not in args:
        raise InputError(cfg.ckpt, "stores no data configuration; give one with +data=NAME")
    args.pop("_target_", None)
    check_views(OmegaConf.create({"data": args}))  # the stored values with the given ones: do they still fit?
    args.update(synthesize=None, num_workers=cfg.num_workers, batch_size_per_gpu=cfg.batch_size)
    return MultiViewDataModule(**args)


def evaluate(cfg: DictConfig) -> dict:
    """Score every sample of ``cfg.split`` (the first ``limit_samples``) and write the report; returns the content
    of ``metrics.json``."""
    if cfg.batch_size < 1:
        raise InputError(None, f"batch_size must be >= 1, got {cfg.batch_size}")
    device = resolve_device(cfg.device)
    out = Path(cfg.paths.output_dir)
    system, saved_data = load_system(cfg.ckpt, device)
    datamodule = build_datamodule(saved_data, cfg)
    dataset = datamodule.dataset(cfg.split)
    metrics = ImageMetrics(**cfg.metrics).to(device)
    prune = GaussianFilter.from_mapping(OmegaConf.to_container(cfg.ply_filter, resolve=True))
    count = len(dataset) if cfg.limit_samples is None else min(cfg.limit_samples, len(dataset))
    if count == 0:
        raise InputError(datamodule.list_path(cfg.split), "lists no sample to evaluate")
    workers = min(cfg.num_workers, math.ceil(count / cfg.batch_size))  # a worker without a batch is startup lost
    loader = DataLoader(Subset(dataset, range(count)), batch_size=cfg.batch_size, shuffle=False,
                        num_workers=workers, collate_fn=Views.collate,
                        pin_memory=device.type == "cuda")  # page-locked batches upload asynchronously
    log.info("evaluating %s on %d %s samples of %s in batches of %d -> %s", cfg.ckpt, count, cfg.split,
             datamodule.list_path(cfg.split), cfg.batch_size, out)

    records: list[ViewRecord] = []
    scored: set[int] = set()
    novel_psnr = []  # for the progress bar's running mean
    start = time.perf_counter()
    # the GPU goes on with the next batch while helper threads encode this one's PNGs and PLYs
    with BackgroundWrites() as files, tqdm(total=count, desc="eval", unit="sample") as bar:
        for batch in loader:
            rec, batch_rec = score_batch(system, metrics, batch.to(device), dataset.samples, cfg.precision)
            per_sample = rec.targets.num_views  # batch_rec: the records of sample 0, then of sample 1, ...
            for b, i in enumerate(rec.inputs.index[:, 0, 1].tolist()):
                if i in scored:  # skip_bad_samples hands the next sample in place of a bad one: score it once
                    continue
                mine = batch_rec[b * per_sample:(b + 1) * per_sample]
                records += mine
                novel_psnr += [r.scores["psnr"] for r in mine if not r.input]
                if cfg.renders is None or len(scored) < cfg.renders:
                    _save_sample(out / "samples" / dataset.samples[i].name, rec, b, cfg, prune, files)
                scored.add(i)
            bar.update(rec.inputs.images.shape[0])
            if novel_psnr:
                bar.set_postfix(novel_psnr=f"{sum(novel_psnr) / len(novel_psnr):.2f}")
    seconds = time.perf_counter() - start
    return _report(cfg, out, records, dataset.samples, seconds)


def score_batch(system: GSLRMSystem, metrics: ImageMetrics, batch: Views, samples: list[Path],
                precision: str) -> tuple[Reconstruction, list[ViewRecord]]:
    """Reconstruct and score one batch ``[B, V]`` on its device; one `ViewRecord` per (sample, target view)."""
    with torch.no_grad(), torch.autocast(batch.images.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        rec = system.reconstruct(batch)
    scores = metrics(rec.renders.rgb, rec.targets.images)  # [B, V_t] each
    ids = rec.inputs.index[:, 0, 1].tolist()  # the dataset position of each sample (a skipped bad one moves it)
    return rec, batch_records([samples[i].name for i in ids], ids, rec.targets.cameras, rec.inputs.cameras,
                              rec.targets.index[..., 0], rec.inputs.index[..., 0], scores)


def _report(cfg: DictConfig, out: Path, records: list[ViewRecord], paths: list[Path], seconds: float) -> dict:
    """per_view.csv, aggregate.md/json, psnr.png and metrics.json from every record."""
    agg = aggregate(records, cfg.report.angle_bin_deg)
    num_samples = len({r.index for r in records})  # fewer than asked when bad samples were skipped
    title = f"{Path(cfg.ckpt).name} on {cfg.split}: {num_samples} samples, {len(records)} scored views"
    write_records_csv(out / "per_view.csv", records)
    aggregates = write_aggregates(out, agg, title)
    plot_psnr(out / "psnr.png", records, agg, title)
    samples: dict[int, dict] = {}
    for r in records:
        entry = samples.setdefault(r.index, {"sample": r.sample, "path": str(paths[r.index]), "views": []})
        entry["views"].append(record_json(r))
    for entry in samples.values():
        entry["mean"] = _means(entry["views"])
    result = {"checkpoint": str(Path(cfg.ckpt).resolve()), "split": cfg.split, "num_samples": num_samples,
              "mean": _means([v for e in samples.values() for v in e["views"]]), "aggregate": aggregates,
              "seconds": seconds, "samples": list(samples.values())}
    write_json(out / "metrics.json", result)
    log.info("%d samples in %.1f s (%.2f samples/s)", num_samples, seconds, num_samples / max(seconds, 1e-9))
    log.info("mean over novel views: %s", ", ".join(f"{k}={v:.4g}" for k, v in result["mean"]["novel"].items()))
    log.info("per-view table %s, aggregates %s, plot %s, metrics %s; renders under %s", out / "per_view.csv",
             out / "aggregate.md", out / "psnr.png", out / "metrics.json", out / "samples")
    return result


def _means(views: list[dict]) -> dict:
    """Means of every metric over novel views (targets that were not inputs) and over all target views, as
    metrics.json has always had them: with every target an input, novel = all (aggregate.json leaves novel out)."""
    names = [k for k in views[0] if k not in ("view", "input", "angle_deg")]
    novel = [v for v in views if not v["input"]] or views
    return {group: {k: sum(v[k] for v in vs) / len(vs) for k in names} for group, vs in
            (("novel", novel), ("all", views))}


def _save_sample(folder: Path, rec: Reconstruction, b: int, cfg: DictConfig, prune: GaussianFilter | None,
                 files: BackgroundWrites) -> None:
    """Sample ``b`` of the batch: renders.png, gaussians.ply (``ply``) and the turntable (``turntable.frames``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files.submit(write_image, folder / "renders.png",
                 image_grid(rec.inputs.images[b], rec.targets.images[b], rec.renders.rgb[b]))  # on the CPU
    if not cfg.ply and cfg.turntable.frames <= 0:
        return
    gaussians = rec.gaussians[b].to(torch.float32)
    if prune is not None:
        gaussians = gaussians.filtered(prune, rec.inputs.cameras.centers[b])
    if cfg.ply:
        files.submit(save_ply, folder / "gaussians.ply", gaussians.to("cpu"))
        files.submit(write_view_cameras, folder / VIEW_CAMERAS, rec.inputs.cameras[b])  # scripts/view.py's frusta
    if cfg.turntable.frames > 0:  # rendered here, on the device the next batch waits for
        save_turntable(folder / "turntable.mp4", gaussians, cfg.turntable.frames, cfg.turntable.size,
                       cfg.turntable.fps, cfg.turntable.crf, background=1.0, backend=cfg.render_backend)
