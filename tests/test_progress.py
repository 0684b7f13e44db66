"""Progress of long steps: a bar in a terminal, tenth-done log lines of a long step elsewhere, and infer.py with
random tiny models on the CPU showing its stages, MVDiffusion's denoising steps and the turntable's frames."""

import io
import logging
import sys

from conftest import REPO, SAMPLE
from hydra import compose, initialize_config_dir

from facelift import progress as progress_module
from facelift.pipeline import run_inference
from facelift.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_terminal_a_bar_counts_the_items(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert list(progress(range(8), desc="turntable", unit="frame")) == list(range(8))
    assert "turntable: 100%" in screen.getvalue() and "8/8" in screen.getvalue()


def test_without_a_terminal_a_long_step_logs_each_tenth_and_a_fast_one_nothing(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe or a log file: no bar
    with caplog.at_level(logging.INFO, logger="facelift"):
        assert sum(progress(range(20), desc="fast", unit="frame")) == sum(range(20))
        assert not caplog.records  # done within LOG_INTERVAL_S: silent
        monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)  # every tenth counts as long enough now
        with progress(total=20, desc="turntable", unit="frame") as bar:
            for _ in range(10):
                bar.update(2)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [f"turntable: {n}/20 frame" for n in range(2, 21, 2)]
    assert sys.stdout.getvalue() == ""


def test_infer_on_the_cpu_shows_stages_steps_and_frames(tmp_path, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("infer", overrides=[
            f"paths.root_dir={tmp_path}", f"output_dir={tmp_path / 'out'}", f"input={SAMPLE / 'examples' / '000.png'}",
            "model/pipeline@mvdiffusion.random=random_tiny", "gslrm.random={d:64,d_head:16,n_layer:2}",
            "allow_random_init=true", "model_size=64", "steps=3", "turntable.size=32", "turntable.frames=5",
            "device=cpu", "auto_crop=false", "background=threshold"])
    run_inference(cfg)
    shown = screen.getvalue()
    # nested bars vanish when done and draw at most every 0.1 s, so only their first state is sure to be seen
    assert "multiview:   0%|          | 0/3" in shown  # MVDiffusion's denoising steps
    assert "turntable:   0%|          | 0/5" in shown  # the turntable's frames
    assert "000.png:   0%|          | 0/8" in shown  # the input's bar of its 8 stages, naming the running one:
    for stage in ("preprocess", "mvdiffusion", "gslrm", "render_views", "turntable_render", "write_wait"):
        assert f"stage/s, {stage}]" in shown
