"""Pose Splatter side by side with this project: one protocol, its own code run unmodified, one table.

    python scripts/peers/pose_splatter.py protocol --raw RAW --holdout 5 --size 128 --out CMP
    python scripts/peers/pose_splatter.py export --protocol CMP/protocol.json --rig REC/rig.json
        --videos REC/VIDEOS --masks REC/MASKS --out CMP/ps [--scale 0.5] [--grid-mm 240]
    python scripts/peers/pose_splatter.py run --out CMP/ps --repo pose-splatter [--epochs 50] [--from-step train]
    python scripts/peers/pose_splatter.py collect --protocol CMP/protocol.json --out CMP/ps --renders CMP/renders/ps
    python scripts/peers/pose_splatter.py gslrm --protocol CMP/protocol.json --ckpt CKPT --data PREPARED
        --renders CMP/renders/gslrm
    python scripts/peers/pose_splatter.py score --protocol CMP/protocol.json --method pose_splatter=CMP/renders/ps
        --method gslrm=CMP/renders/gslrm --out CMP/table [--notes CMP/ps]

``protocol`` fixes the frames (RAW's, in time order), their thirds (Pose Splatter's split: train, val, test; also
written as RAW's data_*.txt lists for prepare_mouse_data.py / train.py), the held-out camera and the scoring size
(facelift/peers/protocol.py). ``export`` writes the recording in Pose Splatter's input format, ``run`` runs its
steps from its checkout (``git clone https://github.com/jackgoffinet/pose-splatter``; torch_scatter from a shim
when not installed), ``collect`` resamples its test renders into the protocol's views, ``gslrm`` renders a
GS-LRM checkpoint into the same views, ``score`` scores both with this project's metrics and writes per_view.csv,
comparison.md, comparison.json and test_frame.png (the first test frame, every camera, the held-out one first:
truth | each method). Bad input: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

from facelift.atomic import write_json
from facelift.errors import InputError, exit_on_user_error
from facelift.peers import pose_splatter as ps
from facelift.peers.protocol import (PROTOCOL_FILE, comparison_figure, make_protocol, read_protocol, score_folder,
                                     write_protocol, write_split_lists, write_tables)

STEP_NAMES = ("center_rotation", "crop_indices", "volume_idx", "write_images", "zarr", "train", "evaluate")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("protocol", help="fix frames, split, held-out camera and scoring size")
    p.add_argument("--raw", type=Path, required=True, help="scripts/import_recordings.py output")
    p.add_argument("--holdout", type=int, default=5, help="camera index neither method trains on")
    p.add_argument("--size", type=int, default=128, help="side of the square views scored")
    p.add_argument("--out", type=Path, required=True, help="folder for protocol.json")
    p = sub.add_parser("export", help="write the recording in Pose Splatter's input format")
    p.add_argument("--protocol", type=Path, required=True)
    p.add_argument("--rig", type=Path, required=True, help="the recording's rig.json")
    p.add_argument("--videos", type=Path, required=True)
    p.add_argument("--masks", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    defaults = ps.ExportConfig()
    p.add_argument("--scale", type=float, default=defaults.scale, help="image scale of its frames")
    p.add_argument("--grid-mm", type=float, default=defaults.grid_mm, help="voxel cube side in rig units")
    p.add_argument("--grid-size", type=int, default=defaults.grid_size, help="voxels a side")
    p.add_argument("--crop-threshold", type=float, default=defaults.crop_threshold,
                   help="share of the frames a grid slice must be carved in to stay in the crop")
    p = sub.add_parser("run", help="run its steps from its checkout")
    p.add_argument("--out", type=Path, required=True, help="the export folder")
    p.add_argument("--repo", type=Path, help="a checkout of github.com/jackgoffinet/pose-splatter")
    p.add_argument("--epochs", type=int, default=50, help="its train_script.py default: 50")
    p.add_argument("--max-batches", type=int, help="batches per epoch (its --max_batches; default: all)")
    p.add_argument("--resume", action="store_true",
                   help="train on from its last checkpoint (its --load; it saves one every epoch)")
    p.add_argument("--from-step", choices=STEP_NAMES, default=STEP_NAMES[0], help="resume at this step")
    p.add_argument("--to-step", choices=STEP_NAMES, default=STEP_NAMES[-1], help="stop after this step")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p = sub.add_parser("collect", help="its test renders resampled into the protocol's views")
    p.add_argument("--protocol", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the export folder")
    p.add_argument("--renders", type=Path, required=True, help="render folder to write")
    p = sub.add_parser("gslrm", help="a GS-LRM checkpoint's renders of the protocol's views")
    p.add_argument("--protocol", type=Path, required=True)
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="prepare_mouse_data.py output of the protocol's RAW")
    p.add_argument("--renders", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--inputs", type=int, help="input views per frame (default: the checkpoint's; 5: every camera "
                                              "but the held-out one of a 6-camera rig)")
    p = sub.add_parser("score", help="score render folders, write the table")
    p.add_argument("--protocol", type=Path, required=True)
    p.add_argument("--method", action="append", required=True, metavar="NAME=FOLDER")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--notes", type=Path, nargs="*", default=[],
                   help="folders whose run.json / collect.json go into comparison.json (timings, own metrics)")
    return parser.parse_args(argv)


def run_steps(args: argparse.Namespace) -> dict:
    project = (args.out / "project").resolve()  # its steps run there, so every path is absolute
    if not (project / ps.CONFIG).is_file():
        raise InputError(project / ps.CONFIG, "not found: run the export command first")
    repo = ps.check_repo(args.repo)
    frames = len(json.loads((project / "frames.json").read_text())["frames"])
    cores = len(os.sched_getaffinity(0))
    if frames < cores or frames // 3 < (os.cpu_count() or 1) // 2:  # its steps give every core a chunk of frames
        raise InputError(project / "frames.json", f"{frames} frames for {cores} cores: its steps split the frames "
                                                  "(and their first third) into one chunk per core (half of them); "
                                                  f"use at least {max(cores, 3 * ((os.cpu_count() or 1) // 2))}")
    shim = importlib.util.find_spec("torch_scatter") is None
    commands = ps.steps(repo, project, args.epochs, args.max_batches, shim, args.resume)
    first, last = STEP_NAMES.index(args.from_step), STEP_NAMES.index(args.to_step)
    log_path = args.out / "run.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {"steps": {}}
    log.update(repo=str(repo), torch_scatter="shim" if shim else "installed", max_batches=args.max_batches)
    if first <= STEP_NAMES.index("train") <= last and not args.dry_run:
        log["epochs"] = log.get("epochs", 0) * args.resume + args.epochs  # in all, across resumed calls
    (project / "images").mkdir(exist_ok=True)
    root = str(Path(ps.__file__).resolve().parents[2])  # this checkout, for `python -m facelift.peers.launch`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    for name, command in list(zip(STEP_NAMES, commands))[first:last + 1]:
        print(f"[{name}] {ps.shell_line(command)}", flush=True)
        if args.dry_run:
            continue
        start = time.perf_counter()
        if name == "volume_idx":
            print(f"  volume_idx = {ps.set_volume_idx(project)}")
        else:
            done = subprocess.run(command, cwd=project, env=env)
            if done.returncode:
                raise InputError(None, f"Pose Splatter's step {name} failed (exit {done.returncode}); its output "
                                       f"is above; resume with --from-step {name}")
        seconds = round(time.perf_counter() - start, 1)
        before = log["steps"].get(name, {}).get("seconds", 0.0) if name == "train" and args.resume else 0.0
        log["steps"][name] = {"seconds": round(before + seconds, 1)}  # training: summed over resumed calls
        write_json(log_path, log)
    return log


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.command == "protocol":
        protocol = make_protocol(args.raw, args.holdout, args.size)
        write_protocol(protocol, args.out / PROTOCOL_FILE)
        write_split_lists(protocol)
        print(f"{len(protocol.frames)} frames: train {len(protocol.train_frames)}, val {len(protocol.val_frames)}, "
              f"test {len(protocol.test_frames)} (frames {protocol.test_frames[0]}-{protocol.test_frames[-1]}); "
              f"camera {protocol.holdout} held out; lists written into {args.raw}")
    elif args.command == "export":
        cfg = ps.ExportConfig(scale=args.scale, grid_mm=args.grid_mm, grid_size=args.grid_size,
                              crop_threshold=args.crop_threshold)
        config = ps.export(read_protocol(args.protocol), args.rig, args.videos, args.masks, args.out, cfg)
        print(f"{args.out}/project/{ps.CONFIG}: {len(config['video_fns'])} cameras at {config['image_width']}x"
              f"{config['image_height']}, ell {config['ell']:.4f}, held out {config['holdout_views']}")
    elif args.command == "run":
        run_steps(args)
    elif args.command == "collect":
        notes = ps.collect(read_protocol(args.protocol), args.out / "project", args.renders)
        write_json(args.out / "collect.json", notes)
        print(f"renders -> {args.renders}")
    elif args.command == "gslrm":
        from facelift.peers.gslrm_renders import render_protocol

        seconds = render_protocol(read_protocol(args.protocol), args.ckpt, args.data, args.renders, args.device,
                                  args.inputs)
        write_json(args.renders / "timing.json", seconds)
        print(f"renders -> {args.renders} ({seconds['seconds_per_frame']:.3f} s a frame)")
    else:
        protocol = read_protocol(args.protocol)
        records, folders = [], {}
        for spec in args.method:
            name, _, folder = spec.partition("=")
            if not folder:
                raise InputError(None, f"--method {spec!r}: expected NAME=FOLDER")
            records += score_folder(protocol, folder, name)
            folders[name] = folder
        notes = {str(d): {f: json.loads((d / f).read_text()) for f in ("run.json", "collect.json", "timing.json")
                          if (d / f).is_file()} for d in args.notes}
        write_tables(records, args.out, {"protocol": str(args.protocol), "notes": notes})
        comparison_figure(protocol, folders, args.out / "test_frame.png")
        print((args.out / "comparison.md").read_text(), end="")


if __name__ == "__main__":
    main()
