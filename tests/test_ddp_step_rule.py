"""FaceLift's step rule under data parallelism: a skip on any rank skips on all, so the replicas stay identical.

Two CPU processes (gloo, Lightning's ``ddp_spawn``) train the tiny GS-LRM for 3 steps. At step 1, after DDP has
averaged the gradients, rank 1 alone gets an infinite gradient entry: rank 0's gradients are all finite. Both
ranks must skip that update (``nonfinite_grad``), take the other two, and hold the same weights at every step.
"""

import json
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from facelift.systems.gslrm_system import GSLRMSystem
from test_gslrm_training import compose_config

PLANT_STEP, PLANT_RANK = 1, 1


class NonFiniteGradientOnOneRank(GSLRMSystem):
    """Plants the fault and records, per step and per rank: were the local gradients finite, did the weights move,
    and a checksum of the weights afterwards (written to ``report_dir/rank{r}.json`` at the end)."""

    report_dir: str = ""

    def on_train_start(self) -> None:
        self.trace = {"finite": [], "changed": [], "checksum": []}

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.before = [p.detach().clone() for p in self.net.parameters()]

    def on_after_backward(self) -> None:  # DDP's all-reduce is done: what happens here stays on this rank
        if self.global_step == PLANT_STEP and self.global_rank == PLANT_RANK:
            next(self.net.parameters()).grad.view(-1)[0] = float("inf")
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        self.trace["finite"].append(all(bool(torch.isfinite(g).all()) for g in grads))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        params = list(self.net.parameters())
        self.trace["changed"].append(any(not torch.equal(a, p) for a, p in zip(self.before, params)))
        self.trace["checksum"].append(sum(float(p.detach().double().abs().sum()) for p in params))

    def on_train_end(self) -> None:
        report = dict(self.trace, skipped=dict(self.step_rule.skipped), rank=self.global_rank)
        (Path(self.report_dir) / f"rank{self.global_rank}.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_a_nonfinite_gradient_on_one_rank_skips_the_step_on_both_and_keeps_them_in_sync(tmp_path):
    cfg = compose_config("train", tmp_path, "model.optim.warmup=0",  # warmup starts at LR 0: step 0 would not move
                         "data.synthesize.num_samples=4", "data.synthesize.num_views=8", "data.batch_size_per_gpu=1")
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # the set is written once, before the processes start
    system = NonFiniteGradientOnOneRank(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    system.report_dir = str(tmp_path)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=3, logger=False,
                        limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(system, datamodule=datamodule)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["finite"] for r in reports] == [[True, True, True], [True, False, True]]  # planted on rank 1 only
    for r in reports:
        assert r["changed"] == [True, False, True], r  # step 1 skipped on both ranks, the others taken
        assert r["skipped"] == {"nonfinite_grad": 1}, r
    assert reports[0]["checksum"] == reports[1]["checksum"]  # the replicas stayed identical step by step
