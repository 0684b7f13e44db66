"""infer.py: photo -> multi-view -> Gaussians -> files, for both rigs and sample folders, with tiny random models
(64 px networks; input.png stays 512², the turntable has its 150 frames), and every way an input or a weight can be
bad."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from conftest import REPO, SAMPLE
from hydra import compose, initialize_config_dir
from PIL import Image

from facelift.data.camera_json import read_camera_file
from facelift.data.sample_folder import write_sample
from facelift.data.synthetic.blob_scenes import make_sample
from facelift.errors import ConfigError, InputError
from facelift.gaussians import load_ply
from facelift.image_io import read_image, write_image
from facelift.models.gslrm import GSLRM, GSLRMConfig
from facelift.models.gslrm.checkpoint import save_official
from facelift.pipeline import facelift_inference_cameras, load_gslrm, run_inference, write_png
from facelift.preprocess import FACE_CENTRE, FACE_SIZE, Preprocessor, PreprocessSettings
from facelift.stages import BackgroundWrites

PHOTO_RGB, PHOTO_RGBA = SAMPLE / "examples" / "000.png", SAMPLE / "examples" / "002.png"
TINY = ["model/pipeline@mvdiffusion.random=random_tiny", "gslrm.random={d:64,d_head:16,n_layer:2}",
        "allow_random_init=true", "model_size=64", "steps=2", "turntable.size=32", "device=cpu"]
OUTPUTS = ("input.png", "multiview.png", "output.png", "gaussians.ply", "input_cameras.json", "turntable.mp4",
           "summary.json")
STAGES = ("gslrm", "filter", "render_views", "turntable_render", "mp4", "write_wait", "total")
WRITES = ("input_png", "multiview_png", "output_png", "ply")  # on helper threads, beside the stages


def infer_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("infer", overrides=[f"paths.root_dir={tmp_path}", f"output_dir={tmp_path / 'out'}",
                                           *overrides])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_outputs(folder: Path, views: int, size: int = 64) -> dict:
    """Every file is there and readable; returns the summary."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)
    for name in ("multiview.png", "output.png"):
        assert tuple(read_image(folder / name).shape) == (3, size, views * size)
    summary = json.loads((folder / "summary.json").read_text())
    assert load_ply(folder / "gaussians.ply").num_gaussians == summary["gaussians"]["kept"] > 0
    g = summary["gaussians"]
    assert g["kept"] + g["filtered_out"] == g["predicted"] and g["filter"]["min_opacity"] == 0.04
    assert all(summary["timings_s"][k] > 0 for k in STAGES if k != "write_wait")  # writes may be done already
    assert summary["timings_s"]["write_wait"] >= 0
    assert set(summary["writes_s"]) == set(WRITES) and all(v > 0 for v in summary["writes_s"].values())
    ends = summary["ended_at_s"]  # the timeline: stages in their order, every write before the wait for them ended
    assert ends["gslrm"] < ends["render_views"] < ends["turntable_render"] < ends["mp4"] <= ends["write_wait"]
    assert max(ends[w] for w in WRITES) <= ends["write_wait"] <= summary["timings_s"]["total"]
    assert summary["environment"]["torch"] == torch.__version__ and summary["environment"]["precision"] == "float32"
    assert summary["settings"]["seed"] == 4 and summary["outputs"] == list(OUTPUTS)
    return summary


# ----------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_photo_gives_every_file_face_cropped_with_a_150_frame_turntable(tmp_path):
    cfg = infer_cfg(tmp_path, f"input={PHOTO_RGB}", "background=threshold", *TINY)
    summary, = run_inference(cfg)
    out = tmp_path / "out" / "000"
    assert summary == json.loads((out / "summary.json").read_text())
    check_outputs(out, views=6)
    assert set(summary["timings_s"]) == {"preprocess", "mvdiffusion", *STAGES}
    assert summary["mode"] == "image" and summary["input"] == str(PHOTO_RGB)
    assert summary["settings"]["guidance_scale"] == 3.0 and summary["settings"]["rig"]["view_order"] == [2, 1, 0, 5,
                                                                                                         4, 3]
    assert summary["checkpoints"]["mvdiffusion"] == {"random": True} and summary["checkpoints"]["gslrm"]["random"]
    assert summary["checkpoints"]["mtcnn"]["package"] == "facenet-pytorch"
    pre = summary["preprocess"]
    assert pre["crop"] == "face" and pre["fallback"] is None and pre["face_confidence"] > 0.99
    assert pre["mask_source"] == "threshold" and summary["rig"]["cameras"].startswith("FaceLift inference cameras")

    image = read_image(out / "input.png")
    assert tuple(image.shape) == (3, 512, 512)  # RGB on white at FaceLift's size, whatever the networks' size
    # FaceLift's crop rule: the face found again in input.png has the training set's size and centre
    boxes, _ = Preprocessor(PreprocessSettings()).detector().detect((image.permute(1, 2, 0) * 255).byte().numpy())
    x0, y0, x1, y1 = boxes[0]
    assert abs(0.5 * (x1 - x0 + y1 - y0) - FACE_SIZE) < 0.08 * FACE_SIZE
    assert abs((x0 + x1) / 2 - FACE_CENTRE[0]) < 10 and abs((y0 + y1) / 2 - FACE_CENTRE[1]) < 10
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out / "turntable.mp4"))
    assert (frames, seconds) == (150, 5.0)  # 150 frames at 30 fps


@pytest.mark.slow
def test_mouse_folder_photo_and_sample_folder(tmp_path):
    """rig=mouse on a folder holding a photo (an RGBA view of a synthetic mouse) and a raw sample folder."""
    sample = make_sample("mouse", 3, size=96)
    folder = write_sample(tmp_path / "inputs" / "mouse_rig", sample.images, sample.cameras)
    (tmp_path / "inputs" / "photo.png").write_bytes((folder / "images" / "cam_002.png").read_bytes())
    cfg = infer_cfg(tmp_path, f"input={tmp_path / 'inputs'}", "rig=mouse", f"rig.cameras={folder / 'opencv_cameras.json'}",
                    "turntable.frames=4", *TINY)
    by_mode = {s["mode"]: s for s in run_inference(cfg)}

    photo = by_mode["image"]
    check_outputs(tmp_path / "out" / "photo", views=6)
    assert photo["preprocess"]["mask_source"] == "alpha" and photo["preprocess"]["crop"] == "mask"
    assert "mtcnn" not in photo["checkpoints"]  # no face detector for a mouse
    mask = (read_image(tmp_path / "out" / "photo" / "input.png") < 0.98).any(0)  # [512, 512] foreground
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    assert abs(extent - 0.8 * 512) <= 6  # the longer side of the animal fills foreground_fraction of the image
    assert abs((rows[0] + rows[-1]) / 2 - 255.5) <= 4 and abs((cols[0] + cols[-1]) / 2 - 255.5) <= 4
    normalized = photo["rig"]["normalization"]
    assert normalized["distance_mode"] == "global" and abs(np.mean(normalized["distances_after"]) - 2.7) < 1e-4

    rig = by_mode["sample_folder"]  # the original mouse inference script's case: posed views, no MVDiffusion
    check_outputs(tmp_path / "out" / "mouse_rig", views=6)
    assert "mvdiffusion" not in rig["checkpoints"] and "mvdiffusion" not in rig["timings_s"]
    assert rig["rig"]["normalization"]["up_source"] in ("pca", "camera_up")
    assert rig["gaussians"]["predicted"] == 2 + 6 * 64 * 64


@pytest.mark.slow
def test_sample_folder_with_a_trained_checkpoint(tmp_path):
    """A human sample folder through a GS-LRM checkpoint file as train.py writes it (Lightning, `net.*`)."""
    torch.manual_seed(0)
    net = GSLRM(GSLRMConfig(d=64, d_head=64, n_layer=2))
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": {}}, ckpt)
    cfg = infer_cfg(tmp_path, f"input={SAMPLE / 'gslrm' / 'sample_000'}", f"gslrm.ckpt={ckpt}",
                    "gslrm.input_views=[0,8,16,24]", "turntable.frames=4", "device=cpu", "model_size=64",
                    "turntable.size=32")
    summary, = run_inference(cfg)
    check_outputs(tmp_path / "out" / "sample_000", views=4)
    assert summary["checkpoints"]["gslrm"]["sha256"] == sha256(ckpt)
    assert summary["checkpoints"]["gslrm"]["layout"] == "project" and summary["rig"]["views"] == [0, 8, 16, 24]
    assert summary["gaussians"]["predicted"] == 2 + 4 * 64 * 64
    first_view = read_image(SAMPLE / "gslrm" / "sample_000" / "images" / "cam_000.png")
    on_white = first_view[:3] * first_view[3:] + 1 - first_view[3:]
    small = torch.nn.functional.interpolate(on_white[None], size=64, mode="bilinear", antialias=True)[0]
    assert (read_image(tmp_path / "out" / "sample_000" / "input.png") - small).abs().mean() < 0.01


@pytest.mark.slow
def test_no_turntable_frames_no_video(tmp_path):
    # 32 px, not TINY's 64: the random network's Gaussians cover whole views, a 64 px render of them took 35 s
    small = [o for o in TINY if not o.startswith("model_size=")] + ["model_size=32"]
    cfg = infer_cfg(tmp_path, f"input={SAMPLE / 'gslrm' / 'sample_000'}", "turntable.frames=0", *small)
    summary, = run_inference(cfg)
    folder = tmp_path / "out" / "sample_000"
    assert sorted(p.name for p in folder.iterdir()) == sorted(set(OUTPUTS) - {"turntable.mp4"})
    assert summary["outputs"] == [name for name in OUTPUTS if name != "turntable.mp4"]
    assert not {"turntable_render", "mp4"} & set(summary["timings_s"])
    with pytest.raises(ConfigError, match="turntable.frames=-1: must be >= 0"):
        run_inference(infer_cfg(tmp_path, f"input={SAMPLE / 'gslrm' / 'sample_000'}", "turntable.frames=-1", *TINY))


@pytest.mark.slow
def test_bad_inputs_in_a_folder_are_reported_and_the_good_ones_kept(tmp_path):
    src = tmp_path / "inputs"
    src.mkdir()
    photo = Image.open(PHOTO_RGB).convert("RGB")
    photo.convert("L").save(src / "gray.png")
    deep = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(src / "deep16.png")  # 16-bit grayscale PNG
    assert Image.open(src / "deep16.png").mode.startswith("I")
    photo.resize((6000, 4000)).save(src / "huge.jpg", quality=85)
    (src / "a_notes.png").write_text("these are notes, not pixels")
    (src / "b_truncated.png").write_bytes(PHOTO_RGB.read_bytes()[:5000])
    Image.new("RGB", (1, 1), "red").save(src / "c_dot.png")
    (src / "readme.txt").write_text("not an input")  # neither image suffix nor sample: ignored, not a failure
    cfg = infer_cfg(tmp_path, f"input={src}", "auto_crop=false", "background=threshold", "turntable.frames=2", *TINY)
    with pytest.raises(InputError) as err:
        run_inference(cfg)
    message = str(err.value)
    assert message.startswith(f"{src}: 3 of 6 inputs failed") and "\n" not in message
    for name, problem in (("a_notes.png", "not a readable image"), ("b_truncated.png", "not a readable image"),
                          ("c_dot.png", "image is 1x1 pixels, too small")):
        assert f"{src / name}: {problem}" in message
    for name, size in (("gray", (512, 512)), ("deep16", (512, 512)), ("huge", (6000, 4000))):
        summary = check_outputs(tmp_path / "out" / name, views=6)
        assert summary["preprocess"]["source_size"] == list(size) and summary["preprocess"]["crop"] == "none"
    huge = json.loads((tmp_path / "out" / "huge" / "summary.json").read_text())["preprocess"]
    assert huge["working_size"] == [2048, 1365]  # downscaled to max_input_side before any work
    assert not (tmp_path / "out" / "a_notes").exists()


@pytest.mark.slow
def test_cli_one_line_error_and_exit_status(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(PHOTO_RGB.read_bytes()[:3000])
    run = subprocess.run([sys.executable, "infer.py", f"input={bad}", f"paths.root_dir={tmp_path}",
                          f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}", "background=threshold",
                          *TINY],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: not a readable image")


# ----------------------------------------------------------------------------------------- weights and settings
def test_gslrm_checkpoint_formats_load_with_their_architecture(tmp_path):
    torch.manual_seed(1)
    net = GSLRM(GSLRMConfig(d=64, d_head=64, n_layer=3))
    official = save_official(tmp_path / "ckpt_0000000000000001.pt", net.state_dict())
    cfg = infer_cfg(tmp_path, "input=x", f"gslrm.ckpt={official}")
    loaded, info = load_gslrm(cfg.gslrm, allow_random_init=False)
    assert info["layout"] == "official" and info["sha256"] == sha256(official) and info["config"]["n_layer"] == 3
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_builtin_cameras_are_facelifts_inference_file_in_mvdiffusion_order():
    fixture = read_camera_file(SAMPLE / "inference_cameras.json", need_file_path=False).cameras
    built = facelift_inference_cameras()
    assert (built.width, built.height) == (fixture.width, fixture.height) == (512, 512)
    assert torch.allclose(built.c2w, fixture.c2w, atol=1e-6)
    assert torch.allclose(built.intrinsics, fixture.intrinsics, atol=1e-4)
    front, _, right, back, left, _ = built[torch.tensor([2, 1, 0, 5, 4, 3])].centers  # MVDiffusion's order
    assert torch.allclose(front, torch.tensor([0.0, -2.7, 0.0], dtype=torch.float64), atol=1e-9)  # FaceLift's front
    assert torch.allclose(back, -front, atol=1e-9) and torch.allclose(left, -right, atol=1e-9)
    assert right[0] < 0  # the subject's right, for a subject facing -Y with Z up, is at -X


# ----------------------------------------------------------------------------------------- preprocessing
def tiny_u2net(folder: Path) -> Path:
    """A stand-in u2net.onnx, written as ONNX protobuf by hand (the onnx package is not a dependency): the mask is
    minus the darkest channel, so a dark object on white is foreground. rembg loads and runs it as the real one."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def num(field: int, n: int) -> bytes:
        return varint(field << 3) + varint(n)

    def msg(field: int, body: bytes | str) -> bytes:
        body = body.encode() if isinstance(body, str) else body
        return varint(field << 3 | 2) + varint(len(body)) + body

    def value(name: str, dims: list[int]) -> bytes:  # ValueInfoProto of a float tensor
        return msg(1, name) + msg(2, msg(1, num(1, 1) + msg(2, b"".join(msg(1, num(1, d)) for d in dims))))

    reduce_min = msg(1, "x") + msg(2, "m") + msg(4, "ReduceMin") + msg(5, msg(1, "axes") + num(8, 1) + num(20, 7)) \
        + msg(5, msg(1, "keepdims") + num(3, 1) + num(20, 2))
    graph = msg(1, reduce_min) + msg(1, msg(1, "m") + msg(2, "y") + msg(4, "Neg")) + msg(2, "u2net_stand_in") \
        + msg(11, value("x", [1, 3, 320, 320])) + msg(12, value("y", [1, 1, 320, 320]))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "u2net.onnx"
    path.write_bytes(num(1, 7) + msg(8, msg(1, "") + num(2, 13)) + msg(7, graph))  # IR 7, opset 13
    return path


def test_rembg_runs_its_session_from_the_local_model_file(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "elsewhere"))  # restored afterwards, never used
    image = torch.ones(3, 200, 300)
    image[:, 50:150, 100:180] = torch.tensor([0.2, 0.3, 0.5])[:, None, None]
    photo = write_image(tmp_path / "photo.png", image)
    pre = Preprocessor(PreprocessSettings(size=64, crop="mask", u2net_home=str(tiny_u2net(tmp_path / "rembg").parent)))
    out = pre(photo)
    assert out.report.mask_source == "rembg" and abs(out.report.foreground_fraction - 100 * 80 / 60000) < 1e-3
    assert out.report.scale == pytest.approx(0.8 * 64 / 100)  # the object's longer side -> 80 % of the image
    inside = out.mask[0, 10:54, 14:50]  # the object: 80 x 100 source pixels -> 41 x 51
    assert out.mask.shape == (1, 64, 64) and abs(float((out.mask > 0.5).float().mean()) - 41 * 51 / 64**2) < 0.03
    assert inside.amin() > 0.7 and out.mask[0, :4].amax() == 0 and out.mask[0, :, :6].amax() == 0
    assert os.environ["U2NET_HOME"] == str(tmp_path / "elsewhere")


def test_alpha_inputs_and_the_fallbacks(tmp_path):
    sample = make_sample("mouse", 5, size=96)
    animal = write_image(tmp_path / "animal.png", sample.images[0])  # RGBA, no face
    settings = PreprocessSettings(size=128, background="rembg", u2net_home=str(tmp_path / "no_model_here"))
    no_face = Preprocessor(settings)(animal)  # RGBA: its alpha is used, rembg never asked for its model
    assert no_face.report.mask_source == "alpha" and no_face.report.crop == "none"
    assert no_face.report.fallback.startswith("no face found") and no_face.report.faces_found == 0
    assert (no_face.image[:, no_face.mask[0] == 0] == 1).all() and no_face.mask.amax() == 1  # on white

    opaque = Preprocessor(PreprocessSettings(background="threshold", crop="none"))(PHOTO_RGBA)  # alpha all 255
    assert opaque.report.mask_source == "threshold" and "opaque everywhere" in opaque.report.notes[0]

    blank = write_image(tmp_path / "blank.png", torch.ones(3, 40, 60))
    plain = Preprocessor(PreprocessSettings(size=64, background="threshold", crop="mask"))(blank)
    assert plain.report.fallback == "no foreground found (threshold): plain resize"
    assert plain.report.mask_source == "none" and plain.report.crop == "none"
    assert torch.allclose(plain.mask[:, 12:52], torch.ones(1, 40, 64))  # 60x40 padded to square, centred


@pytest.mark.slow
def test_benchmark_runs_every_stage_on_cpu(tmp_path, monkeypatch):
    bench = runpy.run_path(str(REPO / "scripts" / "bench_infer.py"))
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_infer.py", "--device", "cpu", "--tiny", "--precisions", "fp32", "--steps",
                                      "2", "--frames", "3", "--repeats", "1", "--out", str(out)])
    assert bench["main"]() == 0
    report = json.loads(out.read_text())
    row, = report["rows"]
    assert set(row["stages_s"]) == {"preprocess", "mvdiffusion", "outside_stages", *STAGES}
    assert set(row["writes_s"]) == set(WRITES) and row["ended_at_s"]["mp4"] <= row["ended_at_s"]["write_wait"]
    assert row["stages_s"]["mp4"] > 0 and abs(row["stages_s"]["outside_stages"]) < 0.5 * row["stages_s"]["total"]
    assert row["wall_s_median"] >= row["stages_s"]["total"] > 0 and row["nonfinite_view_pixels"] == [0, 0]
    assert row["preprocess"] == "face" and row["gaussians"]["predicted"] == 2 + 6 * 64 * 64
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["imageio_ffmpeg"]


def test_background_writes_finish_every_file_and_raise_the_first_error(tmp_path):
    def fail():
        raise OSError("disk full")

    pixels = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(OSError, match="disk full"), BackgroundWrites(threads=1) as files:
        files.submit(write_image, tmp_path / "a.png", pixels)
        files.submit(fail)
        files.submit(write_image, tmp_path / "b.png", pixels)
    assert read_image(tmp_path / "a.png").shape[-2:] == read_image(tmp_path / "b.png").shape[-2:] == (4, 6)


def test_the_fast_png_level_keeps_every_pixel(tmp_path):
    ramp = torch.linspace(0, 1, 96).expand(3, 64, 96)
    image = (0.8 * ramp + 0.2 * torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0)))  # [3, 64, 96]
    fast, small = write_png(tmp_path / "fast.png", image), write_image(tmp_path / "small.png", image,
                                                                           png_compress_level=9)
    assert torch.equal(read_image(fast), read_image(small))  # PNG is lossless at any level
    torch.testing.assert_close(read_image(fast), image, atol=0.5 / 255 + 1e-6, rtol=0)
    assert fast.stat().st_size > small.stat().st_size  # the level was applied: faster, larger
