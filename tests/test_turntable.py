"""Turntable orbit (FaceLift's: hfov 50, radius 2.7, elevation 20, +Z up, front first) and its mp4 / contact sheet."""

import math

import imageio_ffmpeg
import pytest
import torch

from facelift.gaussians import Gaussians
from facelift.image_io import read_image
from facelift.render.turntable import orbit_cameras, render_turntable, turntable_chunks
from facelift.render.video import Mp4Stream, save_turntable, write_contact_sheet, write_mp4


def test_orbit_cameras_look_at_the_origin_with_z_up_starting_at_the_front():
    cams = orbit_cameras(12, 512)
    assert len(cams) == 12 and (cams.width, cams.height) == (512, 512)
    torch.testing.assert_close(cams.intrinsics[0], torch.tensor([548.9937744, 548.9937744, 256.0, 256.0]))
    centres = cams.centers
    torch.testing.assert_close(centres.norm(dim=-1), torch.full((12,), 2.7))
    torch.testing.assert_close(centres[:, 2], torch.full((12,), 2.7 * math.sin(math.radians(20))))
    torch.testing.assert_close(cams.forward, -centres / 2.7)  # every camera looks at the origin
    front = torch.tensor([0.0, -2.7 * math.cos(math.radians(20)), 2.7 * math.sin(math.radians(20))])
    torch.testing.assert_close(centres[0], front, atol=1e-6, rtol=0)
    right = cams.c2w[:, :3, 0]
    assert right[:, 2].abs().max() < 1e-6  # no roll: the image x axis stays horizontal
    assert (cams.up[:, 2] > 0.9).all()  # image up is world +Z (tilted by the 20 deg elevation)
    azimuth = torch.rad2deg(torch.atan2(centres[:, 1], centres[:, 0]))
    step = (azimuth - 270 - 30 * torch.arange(12.0) + 180) % 360 - 180  # 30 deg steps counter-clockwise from 270
    assert step.abs().max() < 1e-4


def test_turntable_video_has_150_frames_and_a_contact_sheet(tmp_path):
    gen = torch.Generator().manual_seed(0)
    n = 200
    g = Gaussians(torch.randn(1, n, 3, generator=gen) * 0.3, torch.randn(1, n, 4, generator=gen),
                  torch.full((1, n, 3), -3.0), torch.full((1, n), 2.0), torch.randn(1, n, 1, 3, generator=gen))
    frames = render_turntable(g, orbit_cameras(150, 33, 31), background=1.0, backend="torch")
    assert frames.shape == (150, 3, 31, 33) and frames.min() >= 0 and frames.max() <= 1
    assert (frames[0] - frames[40]).abs().max() > 0.1  # the views differ as the camera turns
    video = write_mp4(tmp_path / "turntable.mp4", frames)  # odd sizes are padded to even for yuv420p
    n_frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert n_frames == 150 and seconds == pytest.approx(5.0, abs=0.1)  # 30 fps
    sheet = read_image(write_contact_sheet(tmp_path / "turntable.png", frames, count=6, columns=4))
    assert sheet.shape == (3, 2 * 31, 4 * 33)
    torch.testing.assert_close(sheet[:, :31, :33], frames[0], atol=1 / 255 + 1e-6, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turntable.mp4", "turntable.png"]  # no temp files left


def test_save_turntable_writes_video_and_sheet_side_by_side(tmp_path):
    g = Gaussians(torch.zeros(1, 1, 3), torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), -1.5),
                  torch.full((1, 1), 3.0), torch.zeros(1, 1, 1, 3))
    video, sheet = save_turntable(tmp_path / "out" / "turntable.mp4", g, num_frames=8, size=16, fps=4)
    assert sheet == tmp_path / "out" / "turntable.png" and sheet.is_file()
    assert imageio_ffmpeg.count_frames_and_secs(str(video)) == (8, 2.0)


def test_streamed_video_takes_chunks_in_order_and_an_error_leaves_no_file(tmp_path):
    g = Gaussians(torch.zeros(1, 1, 3), torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), -1.5),
                  torch.full((1, 1), 3.0), torch.zeros(1, 1, 1, 3))
    cams = orbit_cameras(40, 16)
    whole = write_mp4(tmp_path / "whole.mp4", render_turntable(g, cams, backend="torch"))
    with Mp4Stream(tmp_path / "streamed.mp4", 16, 16) as video:
        for frames in turntable_chunks(g, cams, backend="torch", chunk=16):  # 16 + 16 + 8 frames
            video.add(frames)
        with pytest.raises(ValueError, match="for a 16x16 video"):
            video.add(torch.zeros(2, 3, 16, 18))
        video.finish()
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "streamed.mp4"))[0] == 40
    decoded = [list(imageio_ffmpeg.read_frames(str(p)))[1:] for p in (whole, tmp_path / "streamed.mp4")]
    assert decoded[0] == decoded[1]  # the first item is the metadata; then the same frames

    with pytest.raises(RuntimeError, match="render failed"), Mp4Stream(tmp_path / "broken.mp4", 16, 16) as video:
        video.add(torch.rand(8, 3, 16, 16))
        raise RuntimeError("render failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.mp4", "whole.mp4"]  # no partial or temp file


def test_an_encoder_failure_names_the_video_and_leaves_no_file(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ffmpeg"  # an ffmpeg built without x264 stops at once with a message
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"Unknown encoder 'libx264'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match=r"bad\.mp4: ffmpeg failed \(1\): Unknown encoder 'libx264'"):
        write_mp4(out / "bad.mp4", torch.rand(40, 3, 64, 64))
    assert list(out.iterdir()) == []


def test_an_encoder_that_cannot_start_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(tmp_path / "no-such-ffmpeg"))
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no-such-ffmpeg") as caught:
        write_mp4(out / "turntable.mp4", torch.rand(4, 3, 16, 16))
    # removed on the spot, not when the garbage collector frees the stream (the caught error still holds it here)
    assert list(out.iterdir()) == [] and caught.traceback
