"""eval.py's data overrides take effect or are refused in one line; a split without its list is an error; the report
names the list it scored. On the tiny random checkpoint of test_evaluation (5 samples, 6 views, 3 inputs, 32 px)."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from test_evaluation import INPUTS, run_eval, tiny_setup  # noqa: F401  (tiny_setup: the fixture)
from test_gslrm_training import compose_config

from facelift.errors import ConfigError, InputError
from facelift.evaluation.evaluator import build_datamodule, evaluate, load_system


def per_sample_inputs(run) -> dict[str, int]:
    with open(run / "per_view.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {s: sum(r["input"] == "1" for r in rows if r["sample"] == s) for s in {r["sample"] for r in rows}}


@pytest.mark.slow
def test_num_input_views_changes_the_views_the_model_reconstructs_from(tiny_setup, monkeypatch):  # noqa: F811
    from facelift.models.gslrm import GSLRM

    seen = []
    original = GSLRM.forward
    monkeypatch.setattr(GSLRM, "forward", lambda self, inputs, **kw: seen.append(inputs.num_views) or
                        original(self, inputs, **kw))
    run = run_eval(tiny_setup, "two_inputs", "data.num_input_views=2", "renders=0", "num_workers=0")
    assert set(seen) == {2} and INPUTS != 2  # the network got 2 views a sample, not the checkpoint's 3
    assert set(per_sample_inputs(run).values()) == {2}


def test_image_size_takes_effect_or_is_refused_when_the_network_cannot_patch_it(tiny_setup):  # noqa: F811
    cfg = compose_config("eval", tiny_setup, f"ckpt={tiny_setup / 'tiny.ckpt'}", "split=test", "data.image_size=16")
    assert build_datamodule(load_system(cfg.ckpt, torch.device("cpu"))[1], cfg).dataset("test")[0].images.shape[-1] == 16
    cfg = compose_config("eval", tiny_setup / "x", f"ckpt={tiny_setup / 'tiny.ckpt'}", "split=test",
                         "data.image_size=36")
    with pytest.raises(ConfigError, match=r"^data\.image_size=36: is not a multiple of the checkpoint's patch size 8"):
        evaluate(cfg)


def test_a_key_the_data_does_not_have_is_refused(tiny_setup):  # noqa: F811
    cfg = compose_config("eval", tiny_setup, f"ckpt={tiny_setup / 'tiny.ckpt'}", "+data.colour=red")
    with pytest.raises(ConfigError, match=r"^data\.colour=red: is not a data setting; use one of .*num_input_views"):
        build_datamodule(load_system(cfg.ckpt, torch.device("cpu"))[1], cfg)


def test_split_test_without_a_test_list_is_an_error_not_the_validation_list(tiny_setup, tmp_path):  # noqa: F811
    ckpt = torch.load(tiny_setup / "tiny.ckpt", weights_only=True)
    ckpt["datamodule_hyper_parameters"]["test_list"] = None
    torch.save(ckpt, tmp_path / "no_test.ckpt")
    cfg = compose_config("eval", tmp_path, f"ckpt={tmp_path / 'no_test.ckpt'}", "split=test")
    with pytest.raises(ConfigError, match=r"^split=test: the data \(.*six\) has no test list; give data.test_list="):
        evaluate(cfg)


@pytest.mark.slow
def test_the_report_names_the_list_it_scored(tiny_setup):  # noqa: F811
    run = run_eval(tiny_setup, "named", "renders=0", "num_workers=0")
    listed = tiny_setup / "six" / "data_test.txt"
    assert json.loads((run / "metrics.json").read_text())["list"] == str(listed.resolve())
    assert str(listed) in (run / "aggregate.md").read_text()


def test_a_folder_given_as_ckpt_is_called_a_folder_and_its_last_checkpoint_named(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(InputError, match="is a folder, not a checkpoint") as err:
        load_system(tmp_path / "run", torch.device("cpu"))
    assert str(err.value).endswith(f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}")


@pytest.mark.slow
def test_a_bad_sample_met_in_a_dataloader_worker_is_one_line(tiny_setup, tmp_path):  # noqa: F811
    """More views asked than a sample holds, read by 2 worker processes: the dataset's own line, no traceback."""
    run = subprocess.run([sys.executable, "eval.py", f"ckpt={tiny_setup / 'tiny.ckpt'}", "split=test",
                          "data.num_views=12", "num_workers=2", "batch_size=2", "metrics.lpips=false",
                          f"paths.log_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tiny_setup / 'six' / 'animal_'}") and "12" in last, last


@pytest.mark.slow
def test_turntable_frames_are_the_models_image_size_unless_asked(tiny_setup):  # noqa: F811
    import imageio_ffmpeg

    for name, extra, side in (("tt_default", [], 32), ("tt_asked", ["turntable.size=48"], 48)):
        run = run_eval(tiny_setup, name, "turntable.frames=2", "renders=1", "ply=false", "num_workers=0", *extra)
        (video,) = (run / "samples").glob("*/turntable.mp4")
        reader = imageio_ffmpeg.read_frames(str(video))
        assert tuple(next(reader)["size"]) == (side, side)  # the 32 px data of the tiny checkpoint, or as asked
        reader.close()
