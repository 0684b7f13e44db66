"""FaceLift's step rule decision by decision: every field of every outcome, the edges of each check, and what it
asks the other ranks (each case derived from the rule's definition in facelift/systems/step_rule.py's docstring)."""

import math

import pytest
import torch
from torch import nn

from facelift.systems.step_rule import StepRule


def params_with_grads(*grads: torch.Tensor | None) -> list[nn.Parameter]:
    ps = []
    for g in grads:
        p = nn.Parameter(torch.zeros(2) if g is None else torch.zeros_like(g))
        p.grad = None if g is None else g.clone()
        ps.append(p)
    return ps


class Ranks:
    """A stand-in for the reduction over ranks: records each local flag and answers ``others or flag``."""

    def __init__(self, others: list[bool]):
        self.others, self.asked = list(others), []

    def __call__(self, flag: bool) -> bool:
        self.asked.append(flag)
        return self.others.pop(0) or flag


def test_a_taken_step_reports_no_reason_and_the_norm_before_clipping():
    ps = params_with_grads(torch.tensor([3.0, 4.0]), torch.tensor([12.0]))  # total norm 13
    d = StepRule(grad_clip_norm=1.0).decide(torch.tensor(0.5), ps)
    assert d.skip is False and d.reason is None and d.grad_norm == pytest.approx(13.0)
    torch.testing.assert_close(ps[1].grad, torch.tensor([12.0 / 13.0]), rtol=1e-5, atol=0)  # clipped to norm 1


def test_each_skip_says_so_with_its_reason_and_norm_and_is_counted_every_time():
    rule = StepRule(grad_clip_norm=1.0, allowed_gradnorm_factor=20.0)
    nan_loss = rule.decide(torch.tensor(float("nan")), params_with_grads(torch.ones(2)))
    assert nan_loss.skip is True and nan_loss.reason == "nonfinite_loss" and math.isnan(nan_loss.grad_norm)
    inf_grad = rule.decide(torch.tensor(1.0), params_with_grads(torch.tensor([float("inf"), 1.0])))
    assert inf_grad.skip is True and inf_grad.reason == "nonfinite_grad" and inf_grad.grad_norm == math.inf
    big = rule.decide(torch.tensor(1.0), params_with_grads(torch.tensor([18.0, 24.0])))  # norm 30 > 1 x 20
    assert big.skip is True and big.reason == "gradnorm" and big.grad_norm == pytest.approx(30.0)
    rule.decide(torch.tensor(float("inf")), params_with_grads(torch.ones(2)))
    assert dict(rule.skipped) == {"nonfinite_loss": 2, "nonfinite_grad": 1, "gradnorm": 1}


def test_a_norm_exactly_at_the_limit_is_clipped_and_taken():
    ps = params_with_grads(torch.tensor([12.0, 16.0]))  # norm exactly 20 = 1 x 20: "exceeds" is strict
    d = StepRule(grad_clip_norm=1.0, allowed_gradnorm_factor=20.0).decide(torch.tensor(1.0), ps)
    assert d.skip is False and d.grad_norm == 20.0


def test_no_clipping_when_grad_clip_norm_is_zero_or_there_are_no_gradients():
    ps = params_with_grads(torch.tensor([300.0, 400.0]))
    d = StepRule(grad_clip_norm=0.0).decide(torch.tensor(1.0), ps)
    assert d.skip is False and d.reason is None and math.isnan(d.grad_norm)
    assert torch.equal(ps[0].grad, torch.tensor([300.0, 400.0]))  # untouched, and no norm skip either
    none = StepRule(grad_clip_norm=1.0).decide(torch.tensor(1.0), params_with_grads(None))
    assert none.skip is False and none.reason is None and math.isnan(none.grad_norm)


def test_sanitizing_replaces_nan_by_zero_and_infinities_by_a_thousandth():
    ps = params_with_grads(torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5]))
    d = StepRule(grad_clip_norm=10.0, sanitize_gradients=True).decide(torch.tensor(1.0), ps)
    assert d.skip is False and d.grad_norm == pytest.approx(math.sqrt(2e-6 + 0.25))
    assert torch.equal(ps[0].grad, torch.tensor([0.0, 1e-3, -1e-3, 0.5]))


def test_every_check_asks_the_other_ranks_and_follows_them():
    """The loss check and the non-finite-norm check go through ``any_rank``: a problem on another rank skips here."""
    ranks = Ranks([True])  # another rank's loss was NaN
    d = StepRule().decide(torch.tensor(1.0), params_with_grads(torch.ones(2)), any_rank=ranks)
    assert (d.skip, d.reason) == (True, "nonfinite_loss") and ranks.asked == [False]
    ranks = Ranks([False, True])  # losses fine everywhere; another rank's gradient was not finite
    ps = params_with_grads(torch.tensor([0.3, 0.4]))
    d = StepRule().decide(torch.tensor(1.0), ps, any_rank=ranks)
    assert (d.skip, d.reason) == (True, "nonfinite_grad") and ranks.asked == [False, False]
    assert d.grad_norm == pytest.approx(0.5)  # this rank's own norm is still reported
    ranks = Ranks([False, False])
    d = StepRule().decide(torch.tensor(1.0), params_with_grads(torch.tensor([0.3, 0.4])), any_rank=ranks)
    assert d.skip is False and ranks.asked == [False, False]
    ranks = Ranks([False, False])  # the local flags the ranks are told are this rank's own findings
    StepRule().decide(torch.tensor(1.0), params_with_grads(torch.tensor([float("nan"), 0.0])), any_rank=ranks)
    assert ranks.asked == [False, True]


# ----------------------------------------------------------------- the on-device twin (model.step_rule.on_device)
def test_on_device_a_norm_exactly_at_the_limit_is_taken_and_above_it_skipped():
    rule = StepRule(grad_clip_norm=1.0, allowed_gradnorm_factor=20.0, on_device=True)
    at = rule.decide_on_device(torch.tensor(1.0), params_with_grads(torch.tensor([12.0, 16.0])))  # norm 20
    assert at.skip.item() == 0.0 and at.grad_norm.item() == 20.0
    above = rule.decide_on_device(torch.tensor(1.0), params_with_grads(torch.tensor([12.0, 16.5])))
    assert above.skip.item() == 1.0 and rule.flush() == {"gradnorm": 1}


def test_on_device_sanitizing_replaces_nan_by_zero_and_infinities_by_a_thousandth():
    ps = params_with_grads(torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5]))
    d = StepRule(grad_clip_norm=10.0, sanitize_gradients=True, on_device=True).decide_on_device(torch.tensor(1.0), ps)
    assert d.skip.item() == 0.0 and d.grad_norm.item() == pytest.approx(math.sqrt(2e-6 + 0.25))
    assert torch.equal(ps[0].grad, torch.tensor([0.0, 1e-3, -1e-3, 0.5]))
