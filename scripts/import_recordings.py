"""Turn a rig's synchronised recordings into FaceLift samples (see facelift/rigs/importer.py).

    python scripts/import_recordings.py --rig DIR/rig.json --videos VIDEOS [--masks MASKS] --out RAW
        [--size 512] [--frames START:STOP:STEP] [--split 0.8 0.1 0.1] [--margin 0.15]

VIDEOS/<camera name>.mp4 (or VIDEOS/<camera name>/ holding numbered frames), one per camera of the rig; MASKS
likewise, white = animal (without --masks the animal is found against each camera's median background). RAW gets
sample_<frame, 6 digits>/images/cam_<k>.png (RGBA, alpha = mask; undistorted, cropped square around the animal,
resized to --size) with opencv_cameras.json (cameras in rig order, the rig's world frame and units), and
data_train.txt / data_val.txt / data_test.txt split by time. Re-running continues where it stopped. Bad input: one
line naming the file, exit status 2, nothing written is damaged. Then:
    python scripts/prepare_mouse_data.py --src RAW --dst PREPARED
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facelift.errors import exit_on_user_error
from facelift.rigs.importer import ImportConfig, import_recordings


def parse_args(argv: list[str] | None) -> ImportConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rig", type=Path, required=True, help="rig.json from scripts/import_rig.py")
    parser.add_argument("--videos", type=Path, required=True, help="folder of <camera name>.mp4 or <camera name>/")
    parser.add_argument("--masks", type=Path, help="folder of mask videos like --videos (white = animal)")
    parser.add_argument("--out", type=Path, required=True, help="output folder RAW (resumable)")
    parser.add_argument("--size", type=int, default=512, help="side of the written square views")
    parser.add_argument("--frames", default="::", help="START:STOP:STEP of the recorded frames (e.g. 0:18000:5)")
    parser.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                        help="shares of the frames, in time order")
    parser.add_argument("--margin", type=float, default=0.15, help="crop margin around the animal, per side")
    parser.add_argument("--background-frames", type=int, default=25, help="frames in the median background")
    parser.add_argument("--background-threshold", type=float, default=0.12,
                        help="colour difference from the background that counts as animal (0-1)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that undistort, crop and write frames (0: none; on a GPU machine ~cores - 2)")
    args = parser.parse_args(argv)
    return ImportConfig(rig=args.rig, videos=args.videos, out=args.out, masks=args.masks, size=args.size,
                        frames=args.frames, split=tuple(args.split), margin=args.margin,
                        background_frames=args.background_frames, background_threshold=args.background_threshold,
                        workers=args.workers)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    report = import_recordings(parse_args(argv))
    split = ", ".join(f"{name} {s['count']}" for name, s in report["split"].items())
    print(f"{report['written']} samples ({split}); {len(report['skipped_no_animal'])} frames skipped "
          "(no animal in some view)")


if __name__ == "__main__":
    main()
