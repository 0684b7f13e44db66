"""What `eval.py` does: reconstruct every sample of a split with a trained GS-LRM, batch by batch, score and report.

For the run: ``per_view.csv`` (one row per scored view: sample, view id, input or not, held out or not (a camera of
``data.holdout_views``, never read in training: the group ``holdout``), angle to the nearest input,
the foreground metrics psnr_fg / iou / psnr_int / coverage / precision / fg_fraction, whole-image PSNR / SSIM /
LPIPS), ``aggregate.md`` / ``aggregate.json`` (means over novel, input, held-out and all views, per camera, per
angle bin), ``psnr.png`` (PSNR over the foreground and the whole image per camera and against the angle) and
``metrics.json`` (per sample and view, the means over novel, held-out and all views, the views each foreground mean
left out, the aggregates). For the first ``renders`` samples (``samples/<sample name>/``):
``renders.png`` (rows: inputs | targets | renders | the data's alpha | rendered alpha, each view labelled with its
camera, role and scores: `facelift.evaluation.renders_figure`), ``gaussians.ply`` (pruned as FaceLift's inference
does) and ``turntable.mp4`` + its contact sheet, each optional.
"""

from __future__ import annotations

import inspect
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
from facelift.errors import ConfigError, InputError
from facelift.evaluation.foreground import FOREGROUND_METRICS, nan_mean
from facelift.evaluation.plot import plot_psnr
from facelift.evaluation.renders_figure import renders_figure
from facelift.evaluation.report import ViewRecord, aggregate, batch_records, record_json, write_aggregates, write_records_csv
from facelift.gaussians import GaussianFilter, save_ply
from facelift.image_io import write_image
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
    if path.is_dir():
        inside = path / "checkpoints" / "last.ckpt"
        raise InputError(path, "is a folder, not a checkpoint (ckpt=)" +
                         (f"; its run's last checkpoint is ckpt={inside}" if inside.is_file() else ""))
    if not path.is_file():
        raise InputError(path, "checkpoint not found (ckpt=)")
    ckpt = load_checkpoint(path)  # weights_only: a checkpoint from elsewhere cannot run code
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise InputError(path, "is not a train.py checkpoint (no hyper_parameters / state_dict); convert official "
                               "GS-LRM weights with scripts/convert_checkpoint.py or use infer.py")
    hp = dict(ckpt["hyper_parameters"])
    # the weights come from this file; eval scores with its own metrics and needs no training loss (nor its VGGs)
    hp.update(init_ckpt=None, val_metrics=None, loss={"_target_": "facelift.losses.GSLRMLoss"},
              compile=False)  # each test batch passes once: compiling would cost more than it saves
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
    known = set(inspect.signature(MultiViewDataModule).parameters)
    unknown = sorted(set(given) - known - {"_target_"})
    if unknown:  # a key the data module would not take: refused, never silently dropped
        raise ConfigError(f"data.{unknown[0]}", given[unknown[0]], f"is not a data setting; use one of "
                                                                   f"{', '.join(sorted(known))}")
    if cfg.split == "test" and not args.get("test_list"):  # never the validation list scored as "test"
        raise ConfigError("split", "test", f"the data ({args['data_dir']}) has no test list; give "
                                           "data.test_list=FILE (relative to data.data_dir) or use split=val")
    check_views(OmegaConf.create({"data": args}))  # the stored values with the given ones: do they still fit?
    args.update(synthesize=None, num_workers=cfg.num_workers, batch_size_per_gpu=cfg.batch_size)
    return MultiViewDataModule(**args)


def use_data_views(system: GSLRMSystem, datamodule: MultiViewDataModule) -> None:
    """The model sees the views the (possibly changed) data gives: ``data.num_input_views=3`` on a checkpoint
    trained with 4 makes it reconstruct from 3 (GS-LRM takes any number of posed views); an image size the network
    cannot cut into patches is refused."""
    patch, size = system.net.config.patch_size, datamodule.dataset_args["image_size"]
    if size % patch:
        raise ConfigError("data.image_size", size, f"is not a multiple of the checkpoint's patch size {patch}")
    stored = system.hparams.num_input_views
    system.hparams.num_input_views = datamodule.num_input_views
    system.hparams.target_has_input = datamodule.target_has_input
    if datamodule.num_input_views != stored:
        log.info("inputs: %d views a sample (data.num_input_views; the checkpoint trained with %d)",
                 datamodule.num_input_views, stored)


def evaluate(cfg: DictConfig) -> dict:
    """Score every sample of ``cfg.split`` (the first ``limit_samples``) and write the report; returns the content
    of ``metrics.json``."""
    if cfg.batch_size < 1:
        raise InputError(None, f"batch_size must be >= 1, got {cfg.batch_size}")
    device = resolve_device(cfg.device)
    out = Path(cfg.paths.output_dir)
    system, saved_data = load_system(cfg.ckpt, device)
    datamodule = build_datamodule(saved_data, cfg)
    use_data_views(system, datamodule)
    dataset = datamodule.dataset(cfg.split)
    metrics = ImageMetrics(**cfg.metrics).to(device)
    prune = GaussianFilter.from_mapping(OmegaConf.to_container(cfg.ply_filter, resolve=True))
    count = len(dataset) if cfg.limit_samples is None else min(cfg.limit_samples, len(dataset))
    if count == 0:
        raise InputError(datamodule.list_path(cfg.split), "lists no sample to evaluate")
    options = datamodule.loader_options()  # a GPU cache (data.cache=device) assembles batches in this process
    workers = min(options["num_workers"], math.ceil(count / cfg.batch_size))  # a worker without a batch is lost
    loader = DataLoader(Subset(dataset, range(count)), batch_size=cfg.batch_size, shuffle=False,
                        num_workers=workers, collate_fn=Views.collate,
                        pin_memory=options["pin_memory"] and device.type == "cuda")  # asynchronous uploads
    log.info("evaluating %s on %d %s samples of %s in batches of %d -> %s", cfg.ckpt, count, cfg.split,
             datamodule.list_path(cfg.split), cfg.batch_size, out)

    records: list[ViewRecord] = []
    scored: set[int] = set()
    novel_psnr = []  # for the progress bar's running mean
    start = time.perf_counter()
    # the GPU goes on with the next batch while helper threads encode this one's PNGs and PLYs
    with BackgroundWrites() as files, tqdm(total=count, desc="eval", unit="sample") as bar:
        for batch in loader:
            rec, batch_rec = score_batch(system, metrics, batch.to(device), dataset.samples, cfg.precision,
                                         dataset.holdout_views)
            per_sample = rec.targets.num_views  # batch_rec: the records of sample 0, then of sample 1, ...
            for b, i in enumerate(rec.inputs.index[:, 0, 1].tolist()):
                if i in scored:  # skip_bad_samples hands the next sample in place of a bad one: score it once
                    continue
                mine = batch_rec[b * per_sample:(b + 1) * per_sample]
                records += mine
                novel_psnr += [r.scores["psnr"] for r in mine if r.role == "novel"]
                if cfg.renders is None or len(scored) < cfg.renders:
                    _save_sample(out / "samples" / dataset.samples[i].name, rec, b, mine, cfg, prune, files)
                scored.add(i)
            bar.update(rec.inputs.images.shape[0])
            if novel_psnr:
                bar.set_postfix(novel_psnr=f"{sum(novel_psnr) / len(novel_psnr):.2f}")
    seconds = time.perf_counter() - start
    return _report(cfg, out, records, dataset.samples, seconds, datamodule.list_path(cfg.split))


def score_batch(system: GSLRMSystem, metrics: ImageMetrics, batch: Views, samples: list[Path],
                precision: str, holdout: list[int] = ()) -> tuple[Reconstruction, list[ViewRecord]]:
    """Reconstruct and score one batch ``[B, V]`` on its device; one `ViewRecord` per (sample, target view), the
    views of cameras in ``holdout`` flagged held out."""
    with torch.no_grad(), torch.autocast(batch.images.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        rec = system.reconstruct(batch)
    scores = metrics(rec.renders, rec.targets)  # [B, V_t] each
    ids = rec.inputs.index[:, 0, 1].tolist()  # the dataset position of each sample (a skipped bad one moves it)
    return rec, batch_records([samples[i].name for i in ids], ids, rec.targets.cameras, rec.inputs.cameras,
                              rec.targets.index[..., 0], rec.inputs.index[..., 0], scores, holdout)


def _report(cfg: DictConfig, out: Path, records: list[ViewRecord], paths: list[Path], seconds: float,
            list_file: Path) -> dict:
    """per_view.csv, aggregate.md/json, psnr.png and metrics.json from every record."""
    agg = aggregate(records, cfg.report.angle_bin_deg)
    num_samples = len({r.index for r in records})  # fewer than asked when bad samples were skipped
    title = f"{Path(cfg.ckpt).name} on {cfg.split} ({list_file}): {num_samples} samples, {len(records)} scored views"
    write_records_csv(out / "per_view.csv", records)
    aggregates = write_aggregates(out, agg, title)
    plot_psnr(out / "psnr.png", records, agg, title)
    samples: dict[int, dict] = {}
    for r in records:
        entry = samples.setdefault(r.index, {"sample": r.sample, "path": str(paths[r.index]), "views": []})
        entry["views"].append(record_json(r))
    for entry in samples.values():
        entry["mean"], entry["left_out"] = _means(entry["views"])
    means, left_out = _means([v for e in samples.values() for v in e["views"]])
    result = {"checkpoint": str(Path(cfg.ckpt).resolve()), "split": cfg.split,
              "list": str(list_file.resolve()), "num_samples": num_samples,
              "mean": means, "left_out": left_out, "aggregate": aggregates, "seconds": seconds,
              "samples": list(samples.values())}
    write_json(out / "metrics.json", result)
    log.info("%d samples in %.1f s (%.2f samples/s)", num_samples, seconds, num_samples / max(seconds, 1e-9))
    log.info("mean over novel views: %s", ", ".join(f"{k}={v:.4g}" for k, v in result["mean"]["novel"].items()))
    log.info("per-view table %s, aggregates %s, plot %s, metrics %s; renders under %s", out / "per_view.csv",
             out / "aggregate.md", out / "psnr.png", out / "metrics.json", out / "samples")
    return result


def _means(views: list[dict]) -> tuple[dict, dict]:
    """Means of every metric over novel views (targets neither inputs nor held out) and over all target views, as
    metrics.json has always had them (with every target an input or held out, novel = the inputs; aggregate.json
    leaves novel out then), and over the held-out views when there are any; per group, the views each foreground
    mean left out (NaN there: no foreground)."""
    names = [k for k in views[0] if k not in ("view", "input", "holdout", "angle_deg")]
    held = [v for v in views if v["holdout"]]
    novel = [v for v in views if not v["input"] and not v["holdout"]] or [v for v in views if not v["holdout"]]
    means, left_out = {}, {}
    for group, vs in (("novel", novel), ("all", views), ("holdout", held)):
        if not vs:
            continue
        pairs = {k: nan_mean([v[k] for v in vs]) for k in names}
        means[group] = {k: mean for k, (mean, _) in pairs.items()}
        left_out[group] = {k: n for k, (_, n) in pairs.items() if k in FOREGROUND_METRICS}
    return means, left_out


def _save_sample(folder: Path, rec: Reconstruction, b: int, records: list[ViewRecord], cfg: DictConfig,
                 prune: GaussianFilter | None, files: BackgroundWrites) -> None:
    """Sample ``b`` of the batch (``records``: its scored targets): renders.png, gaussians.ply (``ply``) and the
    turntable (``turntable.frames``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files.submit(write_image, folder / "renders.png",
                 renders_figure(rec.inputs, rec.targets, rec.renders, b, records))  # on the CPU
    if not cfg.ply and cfg.turntable.frames <= 0:
        return
    gaussians = rec.gaussians[b].to(torch.float32)
    if prune is not None:
        gaussians = gaussians.filtered(prune, rec.inputs.cameras.centers[b])
    if cfg.ply:
        files.submit(save_ply, folder / "gaussians.ply", gaussians.to("cpu"))
        files.submit(write_view_cameras, folder / VIEW_CAMERAS, rec.inputs.cameras[b])  # scripts/view.py's frusta
    if cfg.turntable.frames > 0:  # rendered here, on the device the next batch waits for
        size = cfg.turntable.size or rec.inputs.images.shape[-1]  # the model's views: a 32 px model, 32 px frames
        save_turntable(folder / "turntable.mp4", gaussians, cfg.turntable.frames, size,
                       cfg.turntable.fps, cfg.turntable.crf, background=1.0, backend=cfg.render_backend,
                       angle_label=cfg.turntable.angle_label)
