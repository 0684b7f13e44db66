"""This project's side of the protocol: a trained GS-LRM's renders of every camera of the test frames, as a render
folder (`facelift.peers.protocol`).

The checkpoint reconstructs each test sample of the prepared set (prepare_mouse_data.py run on the protocol's RAW,
at the protocol's size) from the input views its data configuration chooses (never a held-out camera), and its
Gaussians are drawn into every camera of the sample's rig, the held-out one included, as the data loader gives
that rig (normalized when the checkpoint's data normalizes). Seconds per frame cover reconstruction and rendering.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from facelift.data.camera_json import CAMERA_FILE, read_camera_file
from facelift.errors import InputError
from facelift.evaluation.evaluator import build_datamodule, load_system, use_data_views
from facelift.image_io import write_image
from facelift.peers.protocol import Protocol, render_path
from facelift.render import render
from facelift.stages import resolve_device
from facelift.views import Views


def render_protocol(protocol: Protocol, ckpt: str | Path, data: str | Path, folder: str | Path,
                    device: str = "cuda", inputs: int | None = None) -> dict:
    """Write the render folder; returns the timing and the input cameras used. ``inputs``: reconstruct from that
    many views (e.g. all cameras but the held-out one) instead of the checkpoint's own number."""
    dev = resolve_device(device)
    system, saved = load_system(ckpt, dev)
    views = {} if inputs is None else {"num_views": inputs, "num_input_views": inputs, "target_has_input": True}
    cfg = OmegaConf.create({"data": {"data_dir": str(data), "test_list": "data_test.txt",
                                     "holdout_views": [protocol.holdout], **views},
                            "split": "test", "num_workers": 0, "batch_size": 1, "ckpt": str(ckpt)})
    datamodule = build_datamodule(saved, cfg)
    use_data_views(system, datamodule)
    dataset = datamodule.dataset("test")
    frames = [int(p.name.split("_")[1]) for p in dataset.samples]
    if frames != protocol.test_frames:
        raise InputError(Path(data) / "data_test.txt", f"lists frames {frames[:3]}... ({len(frames)}), the "
                                                       f"protocol's test third is {protocol.test_frames[:3]}... "
                                                       f"({len(protocol.test_frames)}): prepare it from the "
                                                       "protocol's RAW after the protocol command")
    if dataset.image_size != protocol.size:
        raise InputError(data, f"is prepared at {dataset.image_size} px, the protocol scores {protocol.size}")
    inputs_used: set[int] = set()
    seconds = 0.0
    for i, frame in enumerate(frames):
        batch: Views = Views.collate([dataset[i]]).to(dev)
        cameras = dataset.rig_cameras(read_camera_file(dataset.samples[i] / CAMERA_FILE))
        if cameras.width != cameras.height:
            raise InputError(dataset.samples[i], "views are not square: prepare the set with --size")
        cameras = cameras.resized(protocol.size, protocol.size).to(torch.float32).to(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        with torch.no_grad():
            rec = system.reconstruct(batch)
            drawn = render(rec.gaussians, cameras.reshape(1, len(cameras)), 1.0,  # over white, as the truth is
                           backend=system.hparams.render_backend)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds += time.perf_counter() - start
        inputs_used.update(rec.inputs.index[0, :, 0].tolist())
        for k in range(len(cameras)):
            write_image(render_path(folder, frame, k), torch.cat([drawn.rgb[0, k], drawn.alpha[0, k]]).cpu())
    if protocol.holdout in inputs_used:
        raise InputError(ckpt, f"its data configuration gave the held-out camera {protocol.holdout} as an input")
    return {"frames": len(frames), "seconds": seconds, "seconds_per_frame": seconds / max(len(frames), 1),
            "input_cameras": sorted(inputs_used), "device": str(dev)}
