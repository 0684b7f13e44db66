"""`StepClock`: training speed in the metrics log, ``speed/steps_per_s`` and ``speed/samples_per_s``.

Measured on the host's wall clock between logging intervals, without waiting for the GPU: over an interval of many
steps the host cannot run ahead of the device by more than its queue, so the mean rate is the device's. The first
interval starts at the end of the first step, so start-up (workers, compilation, the cache's warm-up) is left out,
and so is validation; epoch boundaries (the loader refilling) are a cost of training and are counted.
"""

from __future__ import annotations

import time

import lightning as L


class StepClock(L.Callback):
    def __init__(self, every_n_steps: int | None = None):
        self.every_n_steps = every_n_steps  # None: the trainer's log_every_n_steps
        self.start: float | None = None  # end of the interval's first step
        self.steps = self.samples = 0  # counted since `start`

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = now
            return
        self.steps += 1
        self.samples += _batch_size(batch) * trainer.world_size
        if self.steps < (self.every_n_steps or trainer.log_every_n_steps):
            return
        seconds = max(now - self.start, 1e-9)
        pl_module.log_dict({"speed/steps_per_s": self.steps / seconds, "speed/samples_per_s": self.samples / seconds},
                           batch_size=1)
        self.start, self.steps, self.samples = now, 0, 0

    def on_validation_end(self, trainer, pl_module) -> None:
        self.start, self.steps, self.samples = None, 0, 0  # validation's time is not the training steps'


def _batch_size(batch) -> int:
    images = getattr(batch, "images", None)  # `Views`; other batches count as one sample a step
    return int(images.shape[0]) if images is not None else 1
