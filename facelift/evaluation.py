"""What `eval.py` does: reconstruct every sample of a split with a trained GS-LRM, score and save it.

Per sample (``<run>/samples/<sample name>/``): ``renders.png`` (rows: inputs | targets | renders), ``gaussians.ply``
(pruned as FaceLift's inference does), ``turntable.mp4`` + its contact sheet. For the run: ``metrics.json`` with
PSNR / SSIM / LPIPS per target view and the means over novel views (targets that are not inputs) and all targets.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from facelift.atomic import write_json
from facelift.config_check import check_views
from facelift.data.datamodule import MultiViewDataModule
from facelift.errors import InputError
from facelift.gaussians import GaussianFilter, save_ply
from facelift.image_io import image_grid, write_image
from facelift.render.video import save_turntable
from facelift.stages import resolve_device
from facelift.systems.gslrm_system import GSLRMSystem
from facelift.systems.metrics import ImageMetrics
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
    args.update(synthesize=None, num_workers=cfg.num_workers, batch_size_per_gpu=1)  # one sample per row of results
    return MultiViewDataModule(**args)


def evaluate(cfg: DictConfig) -> dict:
    """Score and save every sample of ``cfg.split``; returns the metrics written to ``metrics.json``."""
    device = resolve_device(cfg.device)
    out = Path(cfg.paths.output_dir)
    system, saved_data = load_system(cfg.ckpt, device)
    datamodule = build_datamodule(saved_data, cfg)
    dataset = datamodule.dataset(cfg.split)
    metrics = ImageMetrics(**cfg.metrics).to(device)
    prune = GaussianFilter.from_mapping(OmegaConf.to_container(cfg.ply_filter, resolve=True))
    count = len(dataset) if cfg.limit_samples is None else min(cfg.limit_samples, len(dataset))
    log.info("evaluating %s on %d %s samples of %s -> %s", cfg.ckpt, count, cfg.split, datamodule.list_path(cfg.split),
             out)

    rows = []
    for i in tqdm(range(count), desc="eval", unit="sample"):
        batch = dataset[i].to(device)  # [1, V]
        name = dataset.samples[i].name
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            rec = system.reconstruct(batch)
        scores = {k: v[0].tolist() for k, v in metrics(rec.renders.rgb, rec.targets.images).items()}  # [V_t] each
        input_ids = set(rec.inputs.index[0, :, 0].tolist())
        views = [{"view": int(view), "input": int(view) in input_ids, **{k: s[j] for k, s in scores.items()}}
                 for j, view in enumerate(rec.targets.index[0, :, 0].tolist())]
        rows.append({"sample": name, "path": str(dataset.samples[i]), "views": views, "mean": _means(views)})
        _save_sample(out / "samples" / name, rec, cfg, prune)

    result = {"checkpoint": str(Path(cfg.ckpt).resolve()), "split": cfg.split, "num_samples": len(rows),
              "mean": _means([v for r in rows for v in r["views"]]), "samples": rows}
    write_json(out / "metrics.json", result)
    log.info("mean over novel views: %s", ", ".join(f"{k}={v:.4g}" for k, v in result["mean"]["novel"].items()))
    log.info("metrics: %s; renders, turntables and PLYs under %s", out / "metrics.json", out / "samples")
    return result


def _means(views: list[dict]) -> dict:
    """Means of every metric over novel views (targets that were not inputs) and over all target views."""
    names = [k for k in views[0] if k not in ("view", "input")] if views else []
    novel = [v for v in views if not v["input"]] or views  # with every target an input, novel = all
    return {group: {k: sum(v[k] for v in vs) / len(vs) for k in names} for group, vs in
            (("novel", novel), ("all", views))}


def _save_sample(folder: Path, rec, cfg: DictConfig, prune: GaussianFilter | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "renders.png", image_grid(rec.inputs.images[0], rec.targets.images[0], rec.renders.rgb[0]))
    gaussians = rec.gaussians[0].to(torch.float32)
    if prune is not None:
        gaussians = gaussians.filtered(prune, rec.inputs.cameras.centers[0])
    save_ply(folder / "gaussians.ply", gaussians)
    if cfg.turntable.frames > 0:
        save_turntable(folder / "turntable.mp4", gaussians, cfg.turntable.frames, cfg.turntable.size,
                       cfg.turntable.fps, cfg.turntable.crf, background=1.0, backend=cfg.render_backend)

