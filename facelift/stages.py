"""Plumbing of the staged runs (infer.py, eval.py): the device a config names, seconds per stage, and output files
written on helper threads while the GPU goes on (PNG encoding and a ~250 MB PLY would otherwise sit on the critical
path)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import torch

from facelift.errors import SetupError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N``; a CUDA device where none is visible
    is a `SetupError`, one line before any work (torch would stop at the first upload, deep in a traceback)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"device {name}: no CUDA device is visible here; use cpu")
    return device


class StageClock:
    """Seconds per named stage; CUDA work is synchronised at both ends so each stage owns its kernels. ``total`` is
    the wall time since the clock was made. Work on helper threads (file writes) is kept apart in ``background``: it
    overlaps the stages. ``ended_at`` holds when each stage and background job ended, in seconds from the start: the
    timeline that shows which one the run waited for."""

    def __init__(self, device: torch.device):
        self.device, self.start = device, time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.background: dict[str, float] = {}
        self.ended_at: dict[str, float] = {}

    def _record(self, into: dict, name: str, start: float) -> None:
        end = time.perf_counter()
        into[name] = round(end - start, 4)
        self.ended_at[name] = round(end - self.start, 4)

    def timed(self, name: str, fn, *args):
        """Run CPU-only ``fn(*args)`` (on a helper thread) and record it as background work; no CUDA sync."""
        start = time.perf_counter()
        result = fn(*args)
        self._record(self.background, name, start)
        return result

    def stop(self) -> None:
        self.seconds["total"] = round(time.perf_counter() - self.start, 4)

    @contextmanager
    def __call__(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._record(self.seconds, name, start)


class BackgroundWrites:
    """``with BackgroundWrites() as files: files.submit(write_image, path, image)``; leaving the block waits for
    every write and raises the first one's error. Give it host (CPU) data: the GPU is busy with the next stage."""

    def __init__(self, threads: int = 4):  # one per file infer.py writes beside the mp4: none waits for another
        self.pool, self.jobs = ThreadPoolExecutor(max_workers=threads), []

    def submit(self, fn, *args) -> Future:
        job = self.pool.submit(fn, *args)
        self.jobs.append(job)
        return job

    def wait(self) -> None:
        for job in self.jobs:
            job.result()

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.pool.shutdown(wait=True)  # even on an error: no thread left writing into a folder we report on
        if exc_type is None:
            self.wait()
