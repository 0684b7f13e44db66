"""The summary of a Hydra multirun (`python train.py -m ...`): one row per job with its overrides and final metric.

Hydra calls ``on_job_end`` in the process that ran the job (the basic launcher's, or a worker of a parallel one),
so each job appends its own record to ``sweep_jobs.jsonl`` in the sweep folder and rewrites ``sweep_summary.csv``
from all records so far: a sweep stopped half-way still has the rows of the jobs that finished. ``on_multirun_end``
prints one line per job. Single runs are left alone.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger("facelift")
RECORDS, SUMMARY = "sweep_jobs.jsonl", "sweep_summary.csv"


def _value(ret: JobReturn) -> float | str:
    """The job's returned metric (NaN when it returned none), or the first line of what stopped it."""
    if ret.status != JobStatus.COMPLETED:
        err = ret._return_value  # the exception (reading return_value would raise it)
        return f"failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    value = ret.return_value
    return float(value) if isinstance(value, (int, float)) else math.nan


def read_records(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / RECORDS
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def write_summary(sweep_dir: Path, records: list[dict]) -> Path:
    """``sweep_summary.csv``: job, one column per overridden key (in first-seen order), the metric, the job folder."""
    keys = list(dict.fromkeys(k for r in records for k in r["overrides"]))
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    path = sweep_dir / SUMMARY
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["job", *keys, *metrics, "output_dir"])
        for r in sorted(records, key=lambda r: r["job"]):
            out.writerow([r["job"], *(r["overrides"].get(k, "") for k in keys),
                          *(r["value"] if r["metric"] == m else "" for m in metrics), r["output_dir"]])
    return path


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml ``callbacks.sweep_summary``)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        record = {"job": int(config.hydra.job.num), "overrides": dict(map(_split, job_return.overrides or [])),
                  "metric": str(config.get("optimized_metric") or "returned"), "value": _value(job_return),
                  "output_dir": str(config.hydra.runtime.output_dir)}
        with open(sweep_dir / RECORDS, "a") as f:  # one short line per write: parallel jobs do not interleave
            f.write(json.dumps(record) + "\n")
        write_summary(sweep_dir, read_records(sweep_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = sorted(read_records(sweep_dir), key=lambda r: r["job"])
        varied = {k for k in {k for r in records for k in r["overrides"]}
                  if len({r["overrides"].get(k) for r in records}) > 1}  # the keys the line tells jobs apart by
        for r in records:
            value = r["value"]
            shown = f"{value:.4g}" if isinstance(value, float) else value
            overrides = " ".join(f"{k}={v}" for k, v in r["overrides"].items() if k in varied or not varied)
            log.info("job %d: %s -> %s=%s", r["job"], overrides, r["metric"], shown)
        if records:
            log.info("sweep summary: %s", sweep_dir / SUMMARY)
