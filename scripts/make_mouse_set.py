"""Write a synthetic mouse study set: distinct animals on six-camera lab rigs, raw layout, split by animal.

    python scripts/make_mouse_set.py --out data/mouse_study/raw --num-animals 2000 --device cuda --workers 14
    python scripts/make_mouse_set.py --out /tmp/mice --num-animals 6 --width 64 --gaussians 1500   (a tiny CPU set)

Every sample folder is one recording of one animal (body length, spine posture, head, ears, limbs, tail; coat
black, white, agouti or brown with a fur-like texture) seen by the 6 cameras of its rig (uneven distances 1.9-3.4,
the calibration frame's Z tilted 3-8 deg off the true up, the lab's intrinsics at 288 x 256 or --width), as RGBA
PNGs (colour = the camera frame with the arena behind the animal, alpha = the animal's mask) and opencv_cameras.json
(frames with view_id; --calib-noise-px moves every camera as a calibration that many pixels off would). Animals
are split into data_train.txt / data_val.txt / data_test.txt (no animal in two lists); generation.json holds the
counts, seconds per stage and bytes on disk, animals.json each sample's animal, rig and split, preview.png the first
samples. Next: python scripts/prepare_mouse_data.py --src OUT --dst PREPARED --size 128 (it keeps the split).
Through a real rig (--rig): one animal recorded as a lab would, at the rig's resolution and lens distortion, at its
true size in the rig's units, walking and rearing along a trajectory (--trajectory com3d: the DANNCE fixture's
18,000 positions), over an arena; writes OUT/VIDEOS/, OUT/MASKS/, OUT/rig.json, preview.png and generation.json
(foreground fraction per view; the lab's range is 1.2-4.1 %), ready for scripts/import_recordings.py:
    python scripts/make_mouse_set.py --rig rigs/mm1/rig.json --trajectory com3d --frames 0:10000:5 --out data/mm1_syn
        --device cuda
    python scripts/import_recordings.py --rig data/mm1_syn/rig.json --videos data/mm1_syn/VIDEOS
        --masks data/mm1_syn/MASKS --out data/mm1_syn/raw
Measured: 2000 animals (20000 Gaussians each, 288 x 256) in 69 s on one H200 with 16 cores (--workers 14
--render-backend torch: no gsplat build needed; scene building and PNG writing dominate), 1.04 GB on disk.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from facelift.data.synthetic.mouse_set import BACKGROUNDS, MouseSetConfig, generate_mouse_set
from facelift.data.synthetic.rig_recording import RigRecordingConfig, generate_rig_recording, load_trajectory
from facelift.errors import exit_on_user_error
from facelift.rigs.rig import read_rig

COM3D = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real_rigs" / \
    "markerless_mouse_1_label3d_dannce.mat"  # --trajectory com3d: the fixture beside the checkout


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    defaults = MouseSetConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (created)")
    parser.add_argument("--num-animals", type=int, default=defaults.num_animals)
    parser.add_argument("--poses-per-animal", type=int, default=defaults.poses_per_animal,
                        help="recordings of each animal (other posture and place), all in the animal's split")
    parser.add_argument("--num-rigs", type=int, default=defaults.num_rigs, help="rig variants (camera set-ups)")
    parser.add_argument("--width", type=int, default=defaults.width, help="image width (height keeps 288:256)")
    parser.add_argument("--gaussians", type=int, help=f"Gaussians per animal (default {defaults.gaussians}; with "
                                                      f"--rig {RigRecordingConfig.gaussians})")
    parser.add_argument("--calib-noise-px", type=float, default=defaults.calib_noise_px,
                        help="write each camera this many pixels off (at the subject, random direction)")
    parser.add_argument("--background", choices=BACKGROUNDS, default=defaults.background)
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction, help="share of animals")
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction, help="share of animals")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="render on: cpu | cuda | cuda:N")
    parser.add_argument("--render-backend", choices=("auto", "gsplat", "torch"), default=defaults.render_backend)
    parser.add_argument("--batch-size", type=int, help=f"samples per render call (default {defaults.batch_size}; "
                                                       f"with --rig, frames: {RigRecordingConfig.batch_size})")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="processes building scenes and writing PNGs (0: none; on a GPU machine ~cores - 2)")
    rig_group = parser.add_argument_group("recording through a real rig (--rig)")
    rig_group.add_argument("--rig", type=Path, help="rig.json (scripts/import_rig.py): record one animal through it")
    rig_group.add_argument("--trajectory", default="com3d",
                           help="com3d (the DANNCE fixture's), or a .mat with com.com3d, .npy or .csv [T, 3]")
    rig_group.add_argument("--frames", default=RigRecordingConfig.frames, help="START:STOP:STEP of the trajectory")
    rig_group.add_argument("--scale", type=float, default=1.0, help="image scale of the rig (0.125: a tiny test)")
    rig_group.add_argument("--mouse-length", type=float, help="nose to tail base in rig units (default 72 mm)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")  # stderr: errors only
    if args.rig is not None:
        config = RigRecordingConfig(frames=args.frames, scale=args.scale, mouse_length=args.mouse_length,
                                    gaussians=args.gaussians or RigRecordingConfig.gaussians,
                                    seed=args.seed, device=args.device, render_backend=args.render_backend,
                                    batch_size=args.batch_size or RigRecordingConfig.batch_size)
        trajectory = load_trajectory(COM3D if args.trajectory == "com3d" else args.trajectory)
        report = generate_rig_recording(args.out, read_rig(args.rig), trajectory, config)
        fg = report["foreground_fraction"]
        print(f"{report['frames']} frames x {len(fg['per_view'])} views at {report['image_size']} -> {args.out}; "
              f"foreground {100 * fg['mean']:.2f} % of a frame on average ("
              + ", ".join(f"{k} {100 * v['mean']:.2f}" for k, v in fg["per_view"].items()) + ")")
        return
    try:
        rig_only = ("out", "rig", "trajectory", "frames", "scale", "mouse_length")
        config = MouseSetConfig(**{k: v for k, v in vars(args).items() if k not in rig_only and v is not None})
    except ValueError as err:
        parser.error(str(err))
    generate_mouse_set(args.out, config)


if __name__ == "__main__":
    main()
