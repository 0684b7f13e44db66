"""MVDiffusion training on a tiny random model: data, loss going down, EMA, conditioning dropout, the train.py run."""

import subprocess
import sys

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO, SAMPLE
from facelift.data.mvdiffusion_data import MVDiffusionBatch, MVDiffusionDataset
from facelift.errors import InputError
from facelift.image_io import write_image
from facelift.models.mvdiffusion import load_unet
from facelift.models.mvdiffusion.pipeline import Conditioning
from facelift.resolvers import register_resolvers
from facelift.systems.mvdiffusion_system import MVDiffusionSystem, piecewise_constant

VIEWS = [f"cam_{i:03d}.png" for i in range(6)]


def tiny_system(*overrides: str) -> MVDiffusionSystem:
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=human_mvdiffusion", "model=mvdiffusion_tiny", *overrides])
    return hydra.utils.instantiate(cfg.model)


def human_dataset(train: bool, **kw) -> MVDiffusionDataset:
    args = dict(view_files=VIEWS, image_dir="", image_size=64, resize_mode="pad", cond_view=0, random_cond_view=False,
                mask_threshold=0.98, train=train, backgrounds=["white", "black", "gray"] if train else ["white"])
    return MVDiffusionDataset([SAMPLE / "mvdiffusion/sample_000"], **{**args, **kw})


def test_dataset_reads_the_six_views_over_the_background():
    item = human_dataset(train=False)[0]
    assert item.views.shape == (1, 6, 3, 64, 64) and item.cond.shape == (1, 3, 64, 64)
    assert torch.equal(item.cond, item.views[:, 0]) and torch.equal(item.background, torch.ones(1, 3))
    corner = item.views[0, :, :, 0, 0]  # background pixels take the background colour
    assert torch.allclose(corner, torch.ones_like(corner), atol=1e-3)
    train = human_dataset(train=True)
    colours = [tuple(train.draw_background().tolist()) for _ in range(300)]
    assert {c: colours.count(c) > 60 for c in colours} == {(1.0, 1.0, 1.0): True, (0.0, 0.0, 0.0): True,
                                                           (0.5, 0.5, 0.5): True}
    for seed in range(3):  # an item is composited over the colour its draw gives
        torch.manual_seed(seed)
        bg = train.draw_background()
        torch.manual_seed(seed)
        item = train[0]
        assert torch.equal(item.background[0], bg)
        assert torch.allclose(item.views[0, :, :, 0, 0], bg.expand(6, 3), atol=1e-3)


def test_dataset_pads_non_square_rgb_and_names_a_missing_file(tmp_path):
    sample = tmp_path / "s0" / "images"
    for i, name in enumerate(VIEWS):
        img = torch.ones(3, 40, 60)  # mouse-like: RGB on white, wider than tall
        img[:, 10:30, 20:40] = 0.1 * i
        write_image(sample / name, img)
    ds = human_dataset(train=False, image_dir="images", backgrounds=["black"])
    ds.samples = [tmp_path / "s0"]
    item = ds[0]
    assert item.views.shape == (1, 6, 3, 64, 64)
    assert item.masks[0, 0, 0, 2, 32] == 0 and item.views[0, 0, :, 2, 32].abs().max() < 1e-3  # pad band = background
    (sample / VIEWS[4]).unlink()
    with pytest.raises(InputError, match="cam_004.png"):
        ds[0]


@pytest.fixture(scope="module")
def fixed_batch() -> MVDiffusionBatch:
    return MVDiffusionBatch.collate([human_dataset(train=False)[0]])


def test_training_lowers_the_loss_on_a_fixed_batch_and_ema_lags(fixed_batch):
    system = tiny_system("model.condition_drop_rate=0")
    optimizer = torch.optim.AdamW(system.unet.parameters(), lr=2e-3)

    def loss(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # the same timesteps and noise at every evaluation
        return system.diffusion_loss(fixed_batch)

    with torch.no_grad():
        before = sum(loss(s).item() for s in range(2))
    for step in range(4):
        value = loss(step % 2)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
        system.update_ema()
        if step == 0:  # the first EMA update copies the weights (decay 0)
            assert all(torch.equal(e, p) for e, p in zip(system.ema_unet.parameters(), system.unet.parameters()))
    with torch.no_grad():
        after = sum(loss(s).item() for s in range(2))
    assert after < 0.75 * before, (before, after)
    assert int(system.ema_updates) == 4
    gap = max((e - p).abs().max().item() for e, p in zip(system.ema_unet.parameters(), system.unet.parameters()))
    assert gap > 1e-4


def test_condition_dropout_follows_facelift_rates():
    system = tiny_system("model.condition_drop_rate=0.1", "model.ema.enabled=false")
    b, t = 3000, 6
    cond = Conditioning(torch.ones(b * t, 4), torch.ones(b * t, 4, 2, 2))
    torch.manual_seed(0)
    out = system.drop_condition(cond, b, t)
    emb = out.image_embeds[:, 0].view(b, t)
    lat = out.image_latents[:, 0, 0, 0].view(b, t)
    assert (emb == emb[:, :1]).all() and (lat == lat[:, :1]).all()  # as a whole: every view of an object alike
    drop_emb, drop_lat = emb[:, 0] == 0, lat[:, 0] == 0
    assert abs(drop_emb.float().mean() - 0.2) < 0.03 and abs(drop_lat.float().mean() - 0.2) < 0.03
    assert abs((drop_emb & drop_lat).float().mean() - 0.1) < 0.02
    system.hparams.drop_type = "drop_independent"
    lat = system.drop_condition(cond, b, t).image_latents[:, 0, 0, 0].view(b, t)
    assert not (lat == lat[:, :1]).all()


def test_snr_weights_optimizer_groups_and_piecewise_schedule():
    system = tiny_system("model.ema.enabled=false", "model.optim.camera_embedding_lr_mult=0.1")
    optimizer = system.configure_optimizers()["optimizer"]
    (rest, camera) = optimizer.param_groups
    assert camera["lr"] == pytest.approx(0.1 * rest["lr"]) and len(camera["params"]) == 4  # class_embedding W, b x 2
    assert len(rest["params"]) + 4 == len(list(system.unet.parameters()))
    steps = torch.tensor([0, 500, 999])
    ac = system.alphas_cumprod[steps]
    snr = ac / (1 - ac)
    assert torch.allclose(system.snr_weights(steps), torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert system.snr_weights(steps)[0] < 1 and system.snr_weights(steps)[2] == 1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = piecewise_constant(opt, "1:3,0.5:5,0.1", warmup=2)
    assert [sched.lr_lambdas[0](s) for s in (0, 1, 2, 4, 5, 9)] == [0.0, 0.5, 1.0, 0.5, 0.1, 0.1]


@pytest.mark.slow
def test_train_py_mouse_experiment_runs_on_cpu(tmp_path):
    data = tmp_path / "mouse"
    for s in range(3):
        for i, name in enumerate(VIEWS):
            img = torch.ones(3, 56, 64)  # RGB on white, non-square like the lab's 288 x 256
            img[:, 8 + s:30 + s, 10 + 4 * i:40 + 4 * i] = torch.tensor([0.6, 0.3, 0.1])[:, None, None]
            write_image(data / f"sample_{s}" / "images" / name, img)
    (data / "data_train.txt").write_text("sample_0\nsample_1\n")
    (data / "data_val.txt").write_text("sample_2\n")
    run = subprocess.run(
        [sys.executable, "train.py", "experiment=mouse_mvdiffusion", "model=mvdiffusion_tiny", "trainer=cpu",
         f"data.data_dir={data}", "data.image_size=64", "data.num_workers=0", "data.batch_size_per_gpu=2",
         "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
         "trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=2", "logger=csv",
         f"paths.log_dir={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = (tmp_path / "out" / "mouse_mvdiffusion").iterdir()
    assert list((run_dir / "val_images").glob("step_*.png"))
    metrics = (run_dir / "csv" / "metrics.csv").read_text()
    assert "val/psnr_cfg3" in metrics and "train/loss" in metrics
    keys = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"].keys()
    assert any(k.startswith("ema_unet.") for k in keys) and not any(k.startswith("frozen.") for k in keys)
    unet = load_unet(run_dir / "unet")  # the exported EMA UNet reads back as the multi-view one
    assert unet.settings.num_views == 6 and unet.settings.sparse_mv_attention
