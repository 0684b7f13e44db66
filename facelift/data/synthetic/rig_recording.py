"""Synthetic mice recorded through a real rig, as a lab records them: videos and masks per camera, rig.json beside.

One animal (`mouse.py`) at its true size in the rig's units (``mouse_length`` nose to tail base, 90 mm for a mouse;
body width ``width_ratio`` of that: an adult mouse is ~27 mm wide, and mouse.py's own girth range would make it
40-58 mm, which is what put an earlier attempt's masks at 8-12 % of the frame) walks and rears along a trajectory
(the DANNCE fixture's ``com3d``: 18,000 real positions at 100 fps): heading from its smoothed velocity, spine bend
from its turning rate, rearing from its height, a gait from the distance walked. The arena (`mouse_lab.py`'s
ray-cast floor, walls and room, scaled to the trajectory) surrounds it.

Each camera's frame is rendered as a pinhole canvas large enough for the lens's field of view (`lens.pinhole_cover`)
and drawn through the rig's distortion and skew (`lens.distort_maps`), at the rig's resolution (``scale`` shrinks
the rig exactly, for small CPU recordings). Arena frame: the rig's world turned so its up axis is +Z, the floor at
z = 0 (``floor``: its height along up), centred on the trajectory; the written rig is the input rig (scaled).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from facelift.atomic import atomic_path, write_json
from facelift.cameras import Cameras
from facelift.data.image_ops import resize
from facelift.data.synthetic.mouse import SKIN, TAIL, MousePose, build_parts, mouse_gaussians, sample_pose, sample_shape
from facelift.data.synthetic.mouse_lab import FLOORS, WALLS, Arena, ArenaView
from facelift.errors import InputError
from facelift.gaussians import Gaussians
from facelift.image_io import image_grid, write_image
from facelift.progress import progress
from facelift.render import render
from facelift.rigs import lens
from facelift.rigs.importer import parse_frames
from facelift.rigs.report import up_axis
from facelift.rigs.rig import RIG_FILE, Rig, write_rig
from facelift.stages import resolve_device

MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "m": 1000.0}  # rig units whose mouse size is known without --mouse-length
# nose to tail base, stretched out: 72 mm puts this animal's posed snout-to-tail-base distance over the com3d walk
# at the fixture's hand labels of the real mouse (median 66 mm, 10-90 % 60-84 mm); the textbook 90 mm (pass
# --mouse-length 90) gives 77-88 mm posed and masks of 4-6 % of a frame, above the lab's 1.2-4.1 %
MOUSE_MM = 72.0
LAB_FG_RANGE = (0.012, 0.041)  # the lab's masks cover 1.2-4.1 % of a frame (markerless_mouse_1)


@dataclass
class RigRecordingConfig:
    frames: str = "0:2000:1"  # START:STOP:STEP of the trajectory's frames to record
    scale: float = 1.0  # image scale of the rig (0.125: 144 x 128 for a tiny CPU recording)
    mouse_length: float | None = None  # nose to tail base (stretched) in rig units; None: MOUSE_MM in the rig's units
    width_ratio: float = 0.3  # body width / nose-to-tail-base (adult mouse: ~27 mm at 90 mm)
    belly_clearance: float = 0.05  # belly height above the floor / nose-to-tail-base (a mouse's legs hide under it)
    fps: float = 100.0  # the trajectory's frame rate (com3d: 100): speeds and turning rates are per second
    floor: float = 0.0  # the floor's height along the rig's up axis, rig units (Label3D rigs: 0)
    gaussians: int = 40000  # per animal (more than the 288 px sets: the animal spans ~500 px here)
    seed: int = 0  # the animal, its coat and the arena's look
    device: str = "cpu"  # where to render: cpu | cuda | cuda:N
    render_backend: str = "auto"  # auto (gsplat on CUDA) | gsplat | torch
    batch_size: int = 4  # frames per render call
    quality: int = 8  # imageio's mp4 quality (0-10) of the colour videos; masks are written at 10


def load_trajectory(path: str | Path) -> np.ndarray:
    """Positions ``[T, 3]`` in rig units from a Label3D/DANNCE ``.mat`` (``com.com3d``), ``.npy`` or ``.csv``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "trajectory file not found")
    try:
        if path.suffix.lower() == ".mat":
            import scipy.io

            com = scipy.io.loadmat(str(path))["com"]
            xyz = np.asarray(com.ravel()[0]["com3d"] if com.dtype == object else com["com3d"][0, 0], dtype=float)
        elif path.suffix.lower() == ".npy":
            xyz = np.load(path)
        else:
            xyz = np.loadtxt(path, delimiter=",")
    except (KeyError, ValueError, IndexError, OSError) as err:
        raise InputError(path, f"no trajectory found (a .mat with com.com3d, a .npy or .csv of x, y, z rows): "
                               f"{err}") from None
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) < 2:
        raise InputError(path, f"trajectory must be [T, 3] positions with T >= 2, got {xyz.shape}")
    good = np.isfinite(xyz).all(1)
    if good.sum() < 2:
        raise InputError(path, "trajectory has fewer than two finite positions")
    idx = np.arange(len(xyz))
    return np.stack([np.interp(idx, idx[good], xyz[good, k]) for k in range(3)], 1)  # gaps: linear fill


def arena_from_world(rig: Rig, trajectory: np.ndarray, floor: float) -> np.ndarray:
    """[4, 4] rigid map from the rig's world into the arena frame (up -> +Z, floor at 0, trajectory centred)."""
    axis, sign = up_axis(rig)
    z = np.zeros(3)
    z[axis] = sign
    x = np.zeros(3)
    x[(axis + 1) % 3] = 1.0
    rot = np.stack([x, np.cross(z, x), z])  # rows: the arena's axes in world coordinates
    p = trajectory @ rot.T
    centre = (p[:, :2].min(0) + p[:, :2].max(0)) / 2
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, -np.array([centre[0], centre[1], floor])
    return m


def trajectory_poses(xyz: np.ndarray, fps: float, length: float, base: MousePose) -> list[MousePose]:
    """One posture per trajectory frame (arena frame, rig units): heading along the smoothed velocity (held while
    the animal sits still), spine bend from the turning rate, rearing from the centre's height above its typical
    walking height, feet swinging with the distance walked. ``position`` stays (0, 0): placed by the caller."""
    k = max(1, int(round(0.1 * fps)))  # velocity over +-100 ms
    pad = np.pad(xyz[:, :2], ((k, k), (0, 0)), mode="edge")
    vel = (pad[2 * k:] - pad[:-2 * k]) * fps / (2 * k)  # [T, 2] per second
    speed = np.linalg.norm(vel, axis=1)
    heading = np.zeros(len(xyz))
    current = math.atan2(vel[0, 1], vel[0, 0]) if speed[0] > 0 else 0.0
    for t in range(len(xyz)):
        if speed[t] > 0.2 * length:  # moving faster than a fifth of a body length per second
            current = math.atan2(vel[t, 1], vel[t, 0])
        heading[t] = current
    heading = np.unwrap(heading)
    hpad = np.pad(heading, (k, k), mode="edge")
    heading = np.convolve(hpad, np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
    turn = np.gradient(heading) * fps  # rad/s
    walk_height = np.percentile(xyz[:, 2], 25)
    rear = 0.9 * np.clip((xyz[:, 2] - walk_height - 0.12 * length) / (0.4 * length), 0, 1)
    stride = np.cumsum(np.r_[0, np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1)]) / (0.35 * length) * 2 * np.pi
    poses = []
    for t in range(len(xyz)):
        feet = tuple(0.04 * math.sin(stride[t] + phase) for phase in (0.0, math.pi, math.pi, 0.0))
        poses.append(replace(base, bend=float(np.clip(0.3 * turn[t], -1.0, 1.0)), rear=float(rear[t]),
                             arch=base.arch * (1 - rear[t]), head_yaw=float(np.clip(0.15 * turn[t], -0.5, 0.5)),
                             feet=feet, position=(0.0, 0.0), heading=float(heading[t])))
    return poses


def nose_to_tail_base(shape, base: MousePose) -> float:
    """The animal's length (mouse.py units) standing straight: from the spine's start to the front of the nose."""
    parts = build_parts(shape, replace(base, bend=0.0, rear=0.0, arch=0.0, head_yaw=0.0, head_pitch=0.0))
    front = [float(c[0]) + float(torch.sqrt(((r[None, :] * rot) ** 2).sum(1))[0])
             for c, r, rot, kind in zip(parts.centres, parts.radii, parts.rots, parts.kinds) if kind != TAIL]
    return max(front)  # build_parts starts the spine (the tail base) at x = 0


def posed_length(shape, pose: MousePose) -> float:
    """Straight-line snout (nose tip) to tail base (spine start) distance of a posture, mouse.py units: what a
    keypoint labeller measures (the fixture's Snout - Tail base)."""
    parts = build_parts(shape, pose)
    nose = [c for c, r, k in zip(parts.centres, parts.radii, parts.kinds)
            if k == SKIN and abs(float(r[0]) - 0.016 * shape.head_scale) < 1e-12][0]  # the nose's sphere
    base = torch.tensor([0.0, 0.0, 0.55 * shape.leg_length + 0.10 * shape.girth], dtype=torch.float64)
    return float((nose - base).norm()) + 0.016 * shape.head_scale


def make_animal(cfg: RigRecordingConfig, units: str):
    """The animal (shape with a mouse's girth), its base posture and the rig units per mouse.py unit."""
    gen = torch.Generator().manual_seed(cfg.seed)
    shape, base = sample_shape(gen), sample_pose(gen)
    if cfg.mouse_length is None and units not in MM_PER_UNIT:
        raise InputError(None, f"the rig's units are {units!r}: pass --mouse-length (nose to tail base in them)")
    length = cfg.mouse_length if cfg.mouse_length is not None else MOUSE_MM / MM_PER_UNIT[units]
    body = nose_to_tail_base(shape, base)
    girth = cfg.width_ratio * body / 0.34  # mouse.py's widest body piece is 0.34 girth wide
    # mouse.py hangs the spine at 0.55 leg + 0.10 girth, the belly 0.135 girth below it at most
    legs = (cfg.belly_clearance * body + 0.035 * girth) / 0.55
    shape = replace(shape, girth=girth, leg_length=legs)
    return shape, base, length / nose_to_tail_base(shape, base), length


def _arena(cfg: RigRecordingConfig, xy: np.ndarray, cam_xy: np.ndarray, length: float) -> Arena:
    gen = np.random.default_rng(cfg.seed + 7)
    reach = float(np.linalg.norm(xy, axis=1).max()) + 0.8 * length  # the animal never meets the wall
    half = min(reach, 0.85 * float(np.linalg.norm(cam_xy, axis=1).min()))  # cameras stand outside it
    room = float(gen.uniform(0.12, 0.3))
    return Arena(bool(gen.random() < 0.5), half, 0.5 * length, FLOORS[gen.integers(len(FLOORS))],
                 WALLS[gen.integers(len(WALLS))], (room, room * 1.02, room * 1.06), float(gen.uniform(17, 42)) / length)


def generate_rig_recording(out: str | Path, rig: Rig, trajectory: np.ndarray, cfg: RigRecordingConfig) -> dict:
    """Write ``out/VIDEOS``, ``out/MASKS``, ``out/rig.json``, ``out/preview.png`` and ``out/generation.json``."""
    device = resolve_device(cfg.device)  # a CUDA device where none is: one line, before anything is written
    out, start = Path(out), time.perf_counter()
    rig = rig.scaled(cfg.scale) if cfg.scale != 1.0 else rig
    odd = [f.name for f in rig.frames if f.w % 2 or f.h % 2]
    if odd:
        raise InputError(None, f"cameras {', '.join(odd)} have an odd image size; H.264 videos need even sizes "
                               "(pass a --scale that gives them)")
    indices = parse_frames(cfg.frames, len(trajectory), "--frames")
    shape, base, scale, length = make_animal(cfg, rig.units)
    a_w = arena_from_world(rig, trajectory, cfg.floor)
    xyz = trajectory @ a_w[:3, :3].T + a_w[:3, 3]  # [T, 3] arena frame
    poses = trajectory_poses(xyz, cfg.fps, length, base)
    c2w = np.stack([a_w @ np.linalg.inv(f.w2c) for f in rig.frames])  # [V, 4, 4] arena frame
    arena = _arena(cfg, xyz[:, :2], c2w[:, :2, 3], length)

    covers = [lens.pinhole_cover(vars(f)) for f in rig.frames]  # canvas padding per camera
    cw = max(f.w + c[0] + c[2] for f, c in zip(rig.frames, covers))
    ch = max(f.h + c[1] + c[3] for f, c in zip(rig.frames, covers))
    intr = torch.tensor([[f.fx, f.fy, f.cx + c[0], f.cy + c[1]] for f, c in zip(rig.frames, covers)])
    canvas = Cameras(torch.from_numpy(c2w), intr.double(), cw, ch)
    maps = [lens.distort_maps({"fx": f.fx, "fy": f.fy, "cx": f.cx + c[0], "cy": f.cy + c[1]}, vars(f))
            for f, c in zip(rig.frames, covers)]
    far = 4.0 * float(np.linalg.norm(c2w[:, :3, 3], axis=1).max())

    fractions = [[] for _ in rig.frames]
    preview = None
    # the empty arena through the fixed rig, ray-cast once: each frame adds only the animal's shadow
    arena_view = ArenaView(Cameras.stack([canvas.to(torch.float32)]).to(device), [arena])
    with contextlib.ExitStack() as stack:
        writers = [[_video(stack, out / folder / f"{f.name}.mp4", cfg.fps / _step(cfg.frames), q)
                    for f in rig.frames] for folder, q in (("VIDEOS", cfg.quality), ("MASKS", 10))]
        bar = stack.enter_context(progress(total=len(indices), desc="frames", unit="frame"))  # seconds a frame on CPU
        for b0 in range(0, len(indices), cfg.batch_size):
            batch = indices[b0:b0 + cfg.batch_size]
            gaussians = Gaussians.cat([_placed(shape, poses[t], xyz[t], scale, cfg) for t in batch], 0).to(device)
            cams = Cameras.stack([canvas.to(torch.float32)] * len(batch)).to(device)
            rgb, alpha = _render_windows(gaussians, cams, cfg.render_backend, 0.05 * length, far)
            shadow = torch.tensor([[xyz[t, 0], xyz[t, 1], 0.45 * length] for t in batch], dtype=torch.float32)
            frame = rgb + (1 - alpha) * arena_view(shadow)  # [B, V, 3, H, W]
            frame = (frame.clamp(0, 1) * 255 + 0.5).byte().permute(0, 1, 3, 4, 2).cpu().numpy()  # [B, V, H, W, 3]
            alpha = alpha[:, :, 0].float().cpu().numpy()  # [B, V, H, W]
            for b in range(len(batch)):
                views = []
                for v, m in enumerate(maps):
                    rgb = lens.remap(frame[b, v], m)
                    mask = (lens.remap(alpha[b, v], m) > 0.5).astype(np.uint8) * 255
                    writers[0][v].append_data(rgb)
                    writers[1][v].append_data(np.repeat(mask[..., None], 3, -1))
                    fractions[v].append(float(mask.mean() / 255))
                    views.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
                if preview is None:
                    preview = [resize(im, 288, round(288 * im.shape[1] / im.shape[2])) for im in views]
            bar.update(len(batch))
    write_rig(rig, out / RIG_FILE)
    if preview:
        write_image(out / "preview.png", image_grid(torch.stack(preview[:3]), torch.stack(preview[3:6]))
                    if len(preview) >= 6 else image_grid(torch.stack(preview)))
    posed = float(np.median([posed_length(shape, poses[t]) for t in indices[::max(1, len(indices) // 50)]])) * scale
    report = _report(cfg, rig, indices, shape, scale, length, posed, arena, a_w, fractions,
                     time.perf_counter() - start)
    write_json(out / "generation.json", report)
    return report


def _render_windows(gaussians: Gaussians, cams: Cameras, backend: str, near: float, far: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Premultiplied colour [B, V, 3, H, W] and alpha [B, V, 1, H, W] of the animal on the full canvases, rendered
    only in one window per view around it (the animal covers a few % of a frame: most of the cost saved)."""
    b, v = cams.batch_shape
    uv, _ = cams.project(gaussians.means[:, None].expand(b, v, -1, 3))  # [B, V, N, 2]
    lo, hi = uv.amin(2), uv.amax(2)  # [B, V, 2]
    reach = 0.15 * (hi - lo).amax(-1, keepdim=True) + 8  # the Gaussians' own extent beyond their centres
    lo, hi = lo - reach, hi + reach
    size = torch.tensor([cams.width, cams.height], device=uv.device)
    win = torch.minimum((hi - lo).amax((0, 1)).ceil().long(), size)  # [2] one window size for the batch
    corner = torch.minimum(torch.maximum(((lo + hi) / 2 - win / 2).floor().long(), torch.zeros_like(size)),
                           size - win)  # [B, V, 2] inside the canvas
    intr = cams.intrinsics.clone()
    intr[..., 2:] -= corner.to(intr.dtype)
    shots = render(gaussians, Cameras(cams.c2w, intr, int(win[0]), int(win[1])), 0.0, backend=backend, near=near,
                   far=far)
    rgb = torch.zeros(b, v, 3, cams.height, cams.width, device=uv.device)
    alpha = torch.zeros(b, v, 1, cams.height, cams.width, device=uv.device)
    for i in range(b):
        for j in range(v):
            x0, y0 = corner[i, j].tolist()
            rgb[i, j, :, y0:y0 + int(win[1]), x0:x0 + int(win[0])] = shots.rgb[i, j]
            alpha[i, j, :, y0:y0 + int(win[1]), x0:x0 + int(win[0])] = shots.alpha[i, j]
    return rgb, alpha


def _step(frames: str) -> int:
    parts = frames.split(":")
    return abs(int(parts[2])) if len(parts) == 3 and parts[2].strip() else 1


def _video(stack: contextlib.ExitStack, path: Path, fps: float, quality: int):
    """An mp4 writer that appears under ``path`` only once complete (atomic rename on a clean exit)."""
    import imageio.v2 as imageio

    tmp = stack.enter_context(atomic_path(path))
    writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=quality,
                                macro_block_size=2, ffmpeg_log_level="error")
    stack.callback(writer.close)
    return writer


def _placed(shape, pose: MousePose, centre: np.ndarray, scale: float, cfg: RigRecordingConfig) -> Gaussians:
    """The posed animal [1, N] at its trajectory position, in rig units; the same seed every frame, so each Gaussian
    keeps its place on the body (texture moves with the animal, no flicker)."""
    g = mouse_gaussians(shape, pose, cfg.gaussians, torch.Generator().manual_seed(cfg.seed + 1))
    means = g.means * scale + torch.tensor([centre[0], centre[1], 0.0], dtype=torch.float32)
    return Gaussians(means, g.quats, g.log_scales + math.log(scale), g.opacity_logits, g.sh)


def _report(cfg, rig, indices, shape, scale, length, posed, arena, a_w, fractions, seconds) -> dict:
    per_view = {}
    for f, fr in zip(rig.frames, fractions):
        arr = np.array(fr)
        per_view[f.name] = {"mean": round(float(arr.mean()), 5), "min": round(float(arr.min()), 5),
                            "max": round(float(arr.max()), 5)}
    means = [v["mean"] for v in per_view.values()]
    return {"settings": asdict(cfg), "frames": len(indices), "first_frame": indices[0], "last_frame": indices[-1],
            "image_size": [rig.frames[0].w, rig.frames[0].h], "units": rig.units,
            "mouse": {"nose_to_tail_base": round(length, 3), "posed_snout_to_tail_base_median": round(posed, 3),
                      "rig_units_per_model_unit": round(scale, 4),
                      "shape": json.loads(json.dumps(asdict(shape)))},
            "arena": asdict(arena), "arena_from_world": a_w.tolist(),
            "foreground_fraction": {"per_view": per_view, "lab_range": list(LAB_FG_RANGE),
                                    "views_in_range": sum(LAB_FG_RANGE[0] <= m <= LAB_FG_RANGE[1] for m in means),
                                    "mean": round(float(np.mean(means)), 5)},
            "seconds": round(seconds, 2), "seconds_per_frame": round(seconds / len(indices), 4)}
