"""Step-speed knobs: the step rule decided on the device (model.step_rule.on_device) against the host rule, step
by step and in training; model.compile."""

import logging
import math

import hydra
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from conftest import REPO
from facelift.config_check import check_train_config
from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.errors import ConfigError
from facelift.resolvers import register_resolvers
from facelift.systems.gslrm_system import GSLRMSystem
from facelift.systems.optim import adamw_with_decay_groups
from facelift.systems.step_rule import StepRule

# planted faults: a multiplier of the loss (huge: the norm explodes) or a non-finite loss / gradient
PLAN = [("nan_loss", None), ("ok", 1.0), ("explode", 1e4), ("ok", 1.0), ("inf_grad", None), ("ok", 1.0),
        ("nan_loss", None), ("ok", 1.0), ("ok", 1.0)]  # the first step is skipped too: no optimizer state yet


def make(seed: int) -> tuple[nn.Module, torch.optim.AdamW]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    return net, adamw_with_decay_groups(net, 1e-2, (0.9, 0.95), 0.05, fused=True)


def planted_loss(net: nn.Module, x: torch.Tensor, fault: str, scale: float | None) -> torch.Tensor:
    out = net(x)
    if fault == "nan_loss":
        return out.sum() * float("nan")
    if fault == "inf_grad":  # a finite loss (sqrt(0) = 0) with NaN gradients (0 x the infinite slope of sqrt at 0)
        return (out * 0).sqrt().sum() + out.pow(2).mean()
    return out.pow(2).mean() * scale


# expected skips: 2 NaN losses, the explosion and the NaN gradient; sanitized gradients are finite; without
# clipping there is no norm to judge, only the loss (and a NaN gradient would be applied: left out there)
def same(a: torch.Tensor, b: torch.Tensor, where) -> None:
    assert torch.equal(a, b), where  # bit for bit, not close


@pytest.mark.parametrize("rule_args, expected_skips", [
    (dict(grad_clip_norm=1.0, allowed_gradnorm_factor=20.0), 4),
    (dict(grad_clip_norm=1.0, allowed_gradnorm_factor=20.0, sanitize_gradients=True), 3),
    (dict(grad_clip_norm=0.0), 2)], ids=["default", "sanitize", "no_clip"])
def test_on_device_rule_equals_the_host_rule(rule_args, expected_skips):
    (net_a, opt_a), (net_b, opt_b) = make(0), make(0)
    host, device = StepRule(**rule_args), StepRule(**rule_args, on_device=True)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    skips = 0
    plan = [(f, s) for f, s in PLAN if rule_args["grad_clip_norm"] > 0 or f != "inf_grad"]
    for step, (fault, scale) in enumerate(plan):
        losses = []
        for net, opt in ((net_a, opt_a), (net_b, opt_b)):
            opt.zero_grad(set_to_none=True)
            losses.append(planted_loss(net, x, fault, scale))
            losses[-1].backward()
        params_a, params_b = list(net_a.parameters()), list(net_b.parameters())
        ref = host.decide(losses[0].detach(), params_a)
        if not ref.skip:
            opt_a.step()
        dec = device.decide_on_device(losses[1].detach(), params_b)
        opt_b.found_inf = dec.skip
        opt_b.step()
        del opt_b.found_inf
        skips += ref.skip
        assert bool(dec.skip) == ref.skip, (step, fault)
        got = float(dec.grad_norm)
        assert (math.isnan(got) and math.isnan(ref.grad_norm)) or got == ref.grad_norm, (step, fault)
        for pa, pb in zip(params_a, params_b):
            same(pa, pb, (step, fault))
            sa, sb = opt_a.state.get(pa, {}), opt_b.state[pb]
            for key in ("exp_avg", "exp_avg_sq", "step"):  # a skipped first step leaves zeros and step 0 behind
                same(sa.get(key, torch.zeros_like(sb[key])), sb[key], (step, fault, key))
    assert skips == expected_skips and device.flush() == host.skipped and device.skipped == host.skipped
    assert device.flush() == {}  # counted once


def test_plan_covers_every_reason():
    host = StepRule(grad_clip_norm=1.0, allowed_gradnorm_factor=20.0)
    net, _ = make(0)
    x = torch.randn(4, 6)
    for fault, scale in PLAN:
        net.zero_grad(set_to_none=True)
        loss = planted_loss(net, x, fault, scale)
        loss.backward()
        host.decide(loss.detach(), list(net.parameters()))
    assert set(host.skipped) == {"nonfinite_loss", "nonfinite_grad", "gradnorm"}


def test_on_device_needs_a_fused_optimizer():
    net, _ = make(0)
    assert not adamw_with_decay_groups(net, 1e-2, (0.9, 0.95), 0.05, fused=False).defaults["fused"]
    assert not adamw_with_decay_groups(net, 1e-2, (0.9, 0.95), 0.05).defaults["fused"]  # auto: CUDA only
    with pytest.raises(ValueError, match="fused"):
        adamw_with_decay_groups(net, 1e-2, (0.9, 0.95), 0.05, fused="yes")


# ----------------------------------------------------------------------------------------- in the GS-LRM system
class PlantedFaults(GSLRMSystem):
    """Step 1 gets a NaN loss and step 3 a loss 1e6 times too large (its gradient norm explodes)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return {1: loss * float("nan"), 3: loss * 1e6}.get(self.global_step, loss)


def fit_tiny(data_dir, tmp_path, on_device: bool, system_class=PlantedFaults, *overrides: str) -> GSLRMSystem:
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={REPO}", f"paths.data_dir={data_dir}",
                                          f"paths.output_dir={tmp_path}", "model.optim.warmup=0",
                                          "model.optim.fused=true", f"model.step_rule.on_device={on_device}",
                                          *overrides])
    L.seed_everything(0)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    system = system_class(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    trainer = L.Trainer(accelerator="cpu", max_steps=5, logger=False, limit_val_batches=0, log_every_n_steps=2,
                        enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(system, datamodule=datamodule)
    return system


@pytest.mark.slow  # two 5-step trainings of the tiny model
def test_system_on_device_rule_trains_to_the_same_weights(tmp_path, caplog):
    data = tmp_path / "data"
    write_dataset(data / "synthetic_human_32px", "human", num_samples=6, size=32, num_views=12)
    host = fit_tiny(data, tmp_path / "host", on_device=False)
    with caplog.at_level(logging.WARNING, logger="facelift"):
        device = fit_tiny(data, tmp_path / "device", on_device=True)
    device.step_rule.flush()
    assert dict(host.step_rule.skipped) == dict(device.step_rule.skipped) == {"nonfinite_loss": 1, "gradnorm": 1}
    # two host-rule runs on this CPU already differ by ~1e-8 (threaded kernels); a missed skip would differ by a
    # whole update (~LR = 4e-4 per weight) or be NaN
    for (name, a), b in zip(host.net.state_dict().items(), device.net.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    assert any("skipped since the last log" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # compiles the tiny network (~30 s on 2 cores)
def test_compiled_network_trains_and_keeps_the_eager_parameter_names(tmp_path):
    data = tmp_path / "data"
    write_dataset(data / "synthetic_human_32px", "human", num_samples=4, size=32, num_views=12)
    one = "data.batch_size_per_gpu=1"  # 3 training samples: batches of 2 would end in one of 1, compiled again
    eager = fit_tiny(data, tmp_path / "eager", False, GSLRMSystem, one)
    compiled = fit_tiny(data, tmp_path / "compiled", False, GSLRMSystem, one, "model.compile=true")
    assert compiled.net._compiled_call_impl is not None  # the network really ran compiled
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints load either way
    # Adam moves each weight by up to LR = 2e-3 a step. The compiled kernels round differently, and a weight whose
    # gradient is near 0 can then take a step of another size (Adam divides by that gradient's own scale): measured
    # on this machine, up to 0.2 % of a tensor's weights differ by more than 1e-5, by at most 3.6e-4. A network that
    # computed anything else would move most weights apart by more than that.
    for (name, a), b in zip(eager.net.state_dict().items(), compiled.net.state_dict().values()):
        diff = (b - a).abs()
        assert float((diff > 1e-5).float().mean()) < 0.01, f"{name}: {(diff > 1e-5).float().mean():.2%} differ"
        assert float(diff.max()) < 2e-3, f"{name}: a weight moved {diff.max():.2e} apart (more than a whole step)"


@pytest.mark.parametrize("override, key", [("data.cache=gpu", "data.cache"),
                                           ("model.optim.fused=maybe", "model.optim.fused"),
                                           ("model.step_rule.on_device=true", "model.step_rule.on_device")])
def test_config_check_refuses_speed_keys_that_cannot_work(override, key):
    """The CPU trainer's AdamW is not fused under ``auto``: the on-device rule would have nothing to skip with."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={REPO}", "paths.output_dir=unused", override])
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg)
    assert err.value.key == key
