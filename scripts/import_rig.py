"""Import a lab's camera calibration as ``rig.json`` (see facelift/rigs/rig.py for the file and its projection).

    python scripts/import_rig.py SRC --out DIR [--format auto|label3d|anipose|facelift] [--image-size W H]
        [--units mm]

SRC: a Label3D/DANNCE ``.mat`` (no image size inside: --image-size is required), an Anipose ``calibration.toml``
or FaceLift's ``opencv_cameras.json``. Writes DIR/rig.json (cameras in the source's order, world frame and units,
pixels in the project's convention) and DIR/rig_report.png (the rig from above and from the side). Bad input: one
line naming the file, exit status 2, nothing written.
Example: python scripts/import_rig.py ../shared/fixtures/real_rigs/markerless_mouse_1_label3d_dannce.mat
    --out rigs/mm1 --image-size 1152 1024
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facelift.errors import exit_on_user_error
from facelift.rigs.formats import FORMATS, read_calibration
from facelift.rigs.report import plot_rig
from facelift.rigs.rig import RIG_FILE, write_rig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="calibration file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (rig.json, rig_report.png)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="auto: from the suffix (.mat .toml .json)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"),
                        help="image size in pixels (required for Label3D, checked against the file otherwise)")
    parser.add_argument("--units", help="length unit of the world frame (default: the format's, mm for Label3D)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rig = read_calibration(args.src, args.format, args.image_size, args.units)
    write_rig(rig, args.out / RIG_FILE)
    plot_rig(rig, args.out / "rig_report.png", title=f"{args.src.name}: {len(rig.frames)} cameras")
    meet = rig.axes_centre()
    print(f"{len(rig.frames)} cameras -> {args.out / RIG_FILE}; optical axes meet nearest {np.round(meet, 2).tolist()}"
          f" {rig.units}")
    for f in rig.frames:
        print(f"  {f.name}: {f.w}x{f.h}, f {f.fx:.1f}/{f.fy:.1f}, c ({f.cx:.1f}, {f.cy:.1f}), "
              f"{np.linalg.norm(f.centre - meet):.1f} {rig.units} from there, dist {np.round(f.dist, 4).tolist()}")


if __name__ == "__main__":
    main()
