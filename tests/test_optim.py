"""Optimiser pieces: FaceLift's step rule, layer freezing by pattern, decay groups and the LR schedule."""

import math

import pytest
import torch
from torch import nn

from facelift.systems.optim import adamw_with_decay_groups, freeze_parameters, warmup_then_decay
from facelift.systems.step_rule import StepRule


def _params_with_grads(*grads):
    ps = []
    for g in grads:
        p = nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        ps.append(p)
    return ps


def test_step_rule_clips_and_steps_on_moderate_gradients():
    rule = StepRule(grad_clip_norm=1.0, allowed_gradnorm_factor=20)
    ps = _params_with_grads(torch.tensor([3.0, 4.0]))  # norm 5: clipped, not skipped
    d = rule.decide(torch.tensor(0.5), ps)
    assert not d.skip and d.grad_norm == pytest.approx(5.0)
    assert ps[0].grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_step_rule_skips_exploding_and_nonfinite_and_counts_them():
    rule = StepRule(grad_clip_norm=1.0, allowed_gradnorm_factor=20)
    assert rule.decide(torch.tensor(1.0), _params_with_grads(torch.tensor([30.0, 0.0]))).reason == "gradnorm"
    assert rule.decide(torch.tensor(float("nan")), _params_with_grads(torch.ones(2))).reason == "nonfinite_loss"
    assert rule.decide(torch.tensor(1.0), _params_with_grads(torch.tensor([float("inf"), 1.0]))).reason == \
        "nonfinite_grad"
    assert dict(rule.skipped) == {"gradnorm": 1, "nonfinite_loss": 1, "nonfinite_grad": 1}
    # with a larger factor (the mouse fork's 100) the same norm of 30 is clipped and applied
    assert not StepRule(1.0, 100).decide(torch.tensor(1.0), _params_with_grads(torch.tensor([30.0, 0.0]))).skip


def test_sanitize_gradients_is_opt_in():
    ps = _params_with_grads(torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5]))
    d = StepRule(grad_clip_norm=10.0, sanitize_gradients=True).decide(torch.tensor(1.0), ps)
    assert not d.skip
    assert torch.equal(ps[0].grad, torch.tensor([0.0, 1e-3, -1e-3, 0.5]))


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer_layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(14))
        self.norm = nn.LayerNorm(4)


def test_freeze_by_range_pattern():
    m = _Toy()
    frozen = freeze_parameters(m, ["transformer_layers.0-11"])
    assert len(frozen) == 24  # weight + bias of layers 0..11
    assert not m.transformer_layers[11].weight.requires_grad
    assert m.transformer_layers[12].weight.requires_grad and m.norm.weight.requires_grad
    with pytest.raises(ValueError, match="match no parameter"):
        freeze_parameters(_Toy(), ["decoder.*"])


def test_decay_groups_exclude_1d_and_frozen():
    m = _Toy()
    freeze_parameters(m, ["transformer_layers.0"])
    opt = adamw_with_decay_groups(m, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) == 13 and len(no_decay["params"]) == 13 + 2


def test_warmup_then_cosine():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_then_decay(opt, warmup=10, total=110, schedule="cosine")
    lrs = []
    for _ in range(111):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(1.0) and lrs[10] == pytest.approx(2.0)
    assert lrs[60] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == pytest.approx(0.0, abs=1e-12)


def _lrs(steps: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_then_decay(opt, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_lr_spike_multiplies_the_schedule_inside_its_window_only():
    base = _lrs(60, warmup=10, total=60)
    spiked = _lrs(60, warmup=10, total=60, spike={"at_step": 20, "factor": 50.0, "steps": 3})
    for step, (a, b) in enumerate(zip(base, spiked)):
        assert b == pytest.approx(a * (50.0 if 20 <= step < 23 else 1.0))
    assert _lrs(30, warmup=10, total=60, spike=None) == base[:30]


@pytest.mark.parametrize("bad", [{"at_step": -1, "factor": 2.0}, {"at_step": 3, "factor": 0.0},
                                 {"at_step": 3, "factor": 2.0, "steps": 0}, {"at_step": 3, "fator": 2.0}])
def test_lr_spike_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="lr_spike"):
        _lrs(1, warmup=1, total=10, spike=bad)
