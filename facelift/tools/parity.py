"""Check this project's models against a reference parity fixture written by the original code.

    python -m facelift.tools.parity ../shared/fixtures/reference/gslrm_tiny_parity.pt [--out DIR]

The fixture's kind is told by its keys: GS-LRM (config, checkpoint, inputs, outputs; its PLY lies beside it with the
same stem) or the MVDiffusion UNet (config, state_dict, inputs, output). Prints the max abs error of every output
and exits 0 only if all are within the tolerance (1e-4), 1 otherwise, 2 on unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelift.errors import InputError, exit_on_user_error
from facelift.weights import load_checkpoint

TOLERANCE = 1e-4


def run_fixture(path: Path, out_dir: Path) -> dict[str, float]:
    """Name -> max abs error for the fixture at ``path`` (outputs written under ``out_dir``)."""
    fixture = load_checkpoint(path)
    if not isinstance(fixture, dict):
        raise InputError(path, "is not a parity fixture (not a dict)")
    out_dir.mkdir(parents=True, exist_ok=True)
    if {"config", "checkpoint", "inputs", "outputs"} <= fixture.keys():
        from facelift.models.gslrm.parity import check

        return check(fixture, out_dir, reference_ply=path.with_suffix(".ply"))
    if {"config", "state_dict", "inputs", "output"} <= fixture.keys():
        from facelift.models.mvdiffusion.parity import check

        return check(fixture, out_dir)
    raise InputError(path, f"is neither a GS-LRM fixture (config, checkpoint, inputs, outputs) nor an MVDiffusion "
                           f"one (config, state_dict, inputs, output); its keys are {sorted(fixture)}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelift.tools.parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs/parity"),
                        help="folder for what the check writes (the PLY), one subfolder per fixture")
    args = parser.parse_args(argv)
    if not args.fixture.is_file():
        raise InputError(args.fixture, "parity fixture not found")

    errors = run_fixture(args.fixture, args.out / args.fixture.stem)
    width = max(map(len, errors), default=10)
    failed = [name for name, err in errors.items() if not err <= TOLERANCE]  # NaN fails too
    for name, err in errors.items():
        print(f"{name:<{width}}  {err:.3e}  {'FAIL' if name in failed else 'ok'}")
    verdict = "PASS" if errors and not failed else "FAIL"
    print(f"{verdict}: {len(errors) - len(failed)}/{len(errors)} within {TOLERANCE:g}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
