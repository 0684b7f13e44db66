"""Progress of long steps in one style for every entry point (turntables, infer stages, MVDiffusion steps, eval,
data generation and preparation).

In a terminal: a tqdm bar on stdout, where the log lines go too (Hydra's console handler, the scripts'
``basicConfig``). Elsewhere (a log file, a pipe, CI) tqdm would write nothing readable, so the bar stays silent and a
step that runs long logs a line at each tenth done instead, at most one every `LOG_INTERVAL_S`: a fast step
prints nothing, a 14-minute one about ten lines.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

from tqdm import tqdm

from facelift.stages import StageClock

log = logging.getLogger("facelift")

LOG_INTERVAL_S = 10.0  # without a terminal: at most one progress line per this many seconds, per bar


class progress(tqdm):  # noqa: N801 - used as tqdm is: ``for x in progress(items, desc=..., unit=...)``
    """``tqdm(iterable, desc=, total=, unit=, leave=)`` in the project's style (see the module): stdout, silent
    without a terminal except for the tenth-done log lines of a long step. ``leave=False`` for bars nested inside
    another (the steps of one input): they vanish when done."""

    def __init__(self, iterable=None, desc: str | None = None, total: int | None = None, unit: str = "it",
                 leave: bool = True, **kwargs):
        super().__init__(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stdout, disable=None,
                         dynamic_ncols=True, **kwargs)
        self._log_desc, self._log_unit = desc or "progress", unit
        self._log_start = self._log_last = time.perf_counter()
        self._log_tenths = 0  # tenths of ``total`` reported so far

    def __iter__(self):
        if not self.disable:
            yield from super().__iter__()
            return
        for item in self.iterable:
            yield item
            self.update()

    def update(self, n: float = 1):
        if not self.disable:
            return super().update(n)
        self.n += n
        if not self.total:
            return None
        tenths = min(10, int(10 * self.n / self.total))
        now = time.perf_counter()
        if tenths > self._log_tenths and now - self._log_last >= LOG_INTERVAL_S:
            self._log_last, self._log_tenths = now, tenths
            log.info("%s: %d/%d %s, %.0f s", self._log_desc, self.n, self.total, self._log_unit,
                     now - self._log_start)
        return None


class ShownStageClock(StageClock):
    """A `StageClock` whose stages also advance a bar of ``stages`` steps named ``desc``, the running stage's name
    beside it (a stage without a loop of its own, such as one GS-LRM forward pass, still says it is running)."""

    def __init__(self, device, desc: str, stages: int):
        super().__init__(device)
        self.bar = progress(total=stages, desc=desc, unit="stage", leave=False)

    @contextmanager
    def __call__(self, name: str):
        self.bar.set_postfix_str(name)
        try:
            with super().__call__(name):
                yield
        except BaseException:
            self.bar.close()
            raise
        self.bar.update()

    def stop(self) -> None:
        super().stop()
        self.bar.close()
