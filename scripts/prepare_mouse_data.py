"""Prepare raw multi-camera mouse recordings for GS-LRM training.

    python scripts/prepare_mouse_data.py --src RAW --dst OUT [--up-axis z] [--target-distance 2.7]
        [--distance-mode global|per_camera] [--no-normalize] [--size 512] [--resize-mode pad|stretch]
        [--crop none|animal] [--margin 0.15] [--split auto|keep|random] [--val-fraction 0.1] [--test-fraction 0]
        [--seed 0] [--workers 0]

RAW holds sample_*/images/*.png and sample_*/opencv_cameras.json (any image size and intrinsics). OUT gets the same
layout at --size x --size with normalized cameras (see facelift/data/rig.py; --no-normalize: checked, reported,
written as recorded, for runs that normalize at load time), the file lists (RAW's own data_train/val/test.txt when
it has data_train.txt, e.g. a set split by animal; else a random split by --seed),
rig_report.json (per sample: up and its source, centre, scale, distances before and after, warnings) and
rig_report.png (the rigs before and after). --crop animal cuts each view to a square around its mask (the mask's
box, its longer side grown by --margin on each side; a view with an empty mask keeps its whole frame) before the
resize, with the intrinsics moved and scaled to match, so the animal fills much of every view (boxes in
rig_report.json, "crops"). Bad input stops the run with one line naming the file, before anything
is written. Train with: python train.py data=mouse_gslrm data.data_dir=OUT
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from facelift.data.prepare import CROPS, PrepareConfig, prepare_dataset
from facelift.data.rig import AXES, DISTANCE_MODES, RigNormalization
from facelift.errors import exit_on_user_error


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, PrepareConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="raw dataset folder (sample_*/)")
    parser.add_argument("--dst", type=Path, required=True, help="output folder (created; samples replaced atomically)")
    parser.add_argument("--up-axis", choices=sorted(AXES), default="z", help="world axis the rig's up goes to")
    parser.add_argument("--up", type=float, nargs=3, metavar=("X", "Y", "Z"),
                        help="the raw rig's up, when known (default: the camera file's, else estimated)")
    parser.add_argument("--target-distance", type=float, default=2.7, help="mean camera distance after (FaceLift: 2.7)")
    parser.add_argument("--distance-mode", choices=DISTANCE_MODES, default="global",
                        help="global: one similarity per rig; per_camera: each camera to the distance, fx fy scaled")
    parser.add_argument("--front-view", type=int, help="view put on the --front-axis side by a rotation about up")
    parser.add_argument("--front-axis", choices=sorted(AXES), default="-y", help="where the front view goes")
    parser.add_argument("--planarity-threshold", type=float, default=0.25,
                        help="estimate up by PCA only when the camera centres are this close to a plane")
    parser.add_argument("--no-rescale-focal", action="store_true",
                        help="per_camera: leave fx, fy as they are (the seed recipe; images and poses disagree)")
    parser.add_argument("--no-recentre", action="store_true",
                        help="keep the raw origin instead of moving the point closest to all optical axes there")
    parser.add_argument("--no-normalize", action="store_true",
                        help="write the cameras as recorded (still checked and reported); training normalizes")
    parser.add_argument("--size", type=int, default=512, help="side of the square output images")
    parser.add_argument("--resize-mode", choices=("pad", "stretch"), default="pad",
                        help="whole frames (no --crop) to square: pad (no distortion) or stretch")
    parser.add_argument("--crop", choices=CROPS, default="none",
                        help="animal: each view cut to a square around its mask (alpha, or non-white for RGB)")
    parser.add_argument("--margin", type=float, default=0.15,
                        help="--crop animal: share of the mask box's longer side added on each side")
    parser.add_argument("--split", choices=("auto", "keep", "random"), default="auto",
                        help="auto: keep RAW's lists when it has data_train.txt, else random")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="random split: share in data_val.txt")
    parser.add_argument("--test-fraction", type=float, default=0.0, help="random split: share in data_test.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split")
    parser.add_argument("--workers", type=int, default=0, help="processes that check and write samples (0: one)")
    args = parser.parse_args(argv)
    try:
        rig = RigNormalization(up_axis=args.up_axis, up=args.up, target_camera_distance=args.target_distance,
                               distance_mode=args.distance_mode, front_view=args.front_view,
                               front_axis=args.front_axis, planarity_threshold=args.planarity_threshold,
                               rescale_focal=not args.no_rescale_focal, recentre=not args.no_recentre,
                               enabled=not args.no_normalize)
        config = PrepareConfig(size=args.size, resize_mode=args.resize_mode, crop=args.crop, margin=args.margin,
                               val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
                               split=args.split, rig=rig)
    except ValueError as err:
        parser.error(str(err))
    return args, config


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args, config = parse_args(argv)
    # progress and log lines on stdout: stderr carries only errors
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    prepare_dataset(args.src, args.dst, config, workers=args.workers)


if __name__ == "__main__":
    main()
