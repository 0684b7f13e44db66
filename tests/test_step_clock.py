"""StepClock: steps/s and samples/s over each logging interval, start-up and validation left out."""

from types import SimpleNamespace

import torch

from facelift.systems import step_clock
from facelift.systems.step_clock import StepClock


class Module:
    def __init__(self):
        self.logged = []

    def log_dict(self, values, batch_size):
        self.logged.append(values)


def test_rates_over_each_interval(monkeypatch):
    clock_times = iter([100.0, 101.0, 101.5, 102.0, 102.5, 200.0, 200.25, 200.5])  # perf_counter per batch end
    monkeypatch.setattr(step_clock.time, "perf_counter", lambda: next(clock_times))
    trainer = SimpleNamespace(log_every_n_steps=2, world_size=2)
    batch = SimpleNamespace(images=torch.zeros(3, 6, 3, 4, 4))  # 3 samples a rank, 2 ranks
    module, clock = Module(), StepClock()
    for i in range(5):  # start-up step at t=100 (not counted), then 2-step intervals of 1.0 s and 1.0 s
        clock.on_train_batch_end(trainer, module, None, batch, i)
    clock.on_validation_end(trainer, module)
    for i in range(3):  # after validation: the first step restarts the clock, then 2 steps in 0.5 s
        clock.on_train_batch_end(trainer, module, None, batch, i)
    assert module.logged == [{"speed/steps_per_s": 2 / 1.5, "speed/samples_per_s": 12 / 1.5},
                             {"speed/steps_per_s": 2.0, "speed/samples_per_s": 12.0},
                             {"speed/steps_per_s": 4.0, "speed/samples_per_s": 24.0}]
