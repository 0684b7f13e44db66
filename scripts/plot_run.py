"""Training curves of one or more runs in one picture (loss, validation PSNR all / novel views, learning rate).

    python scripts/plot_run.py outputs/mouse_gslrm_scratch/2026-12-06_10-00-00            # -> <run>/curves.png
    python scripts/plot_run.py studies/mice/runs/* --out studies/mice/curves.png           # rows side by side

A run is a train.py output folder (its csv/metrics.csv) or a metrics.csv itself; the label is the folder's name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelift.evaluation.curves import plot_curves
from facelift.errors import exit_on_user_error


def metrics_csv(run: Path) -> Path:
    return run if run.suffix == ".csv" else run / "csv" / "metrics.csv"


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run folders (or metrics.csv files)")
    p.add_argument("--out", type=Path, help="PNG to write (default: curves.png in the only run's folder)")
    p.add_argument("--title", default="", help="figure title")
    args = p.parse_args(argv)
    if args.out is None and len(args.runs) > 1:
        p.error("--out is required with several runs")
    out = args.out or args.runs[0] / "curves.png"
    labels = {(r.parent.parent.name if r.suffix == ".csv" else r.name): metrics_csv(r) for r in args.runs}
    print(f"wrote {plot_curves(labels, out, args.title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
