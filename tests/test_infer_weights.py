"""infer.py before any work: every missing weight named in one message (path, what it is, how to get it), a path
the user gave that is absent or of the wrong kind said so without advice about another file, random weights and
the input only when given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE
from hydra import compose, initialize_config_dir

from facelift.errors import ConfigError, InputError, MissingWeightsError
from facelift.pipeline import run_inference
from facelift.preprocess import Preprocessor, PreprocessSettings

PHOTO_RGB, PHOTO_RGBA = SAMPLE / "examples" / "000.png", SAMPLE / "examples" / "002.png"
RANDOM_GSLRM = "gslrm.random={d:64,d_head:16,n_layer:2}"


def infer_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("infer", overrides=[f"paths.root_dir={tmp_path}", f"output_dir={tmp_path / 'out'}",
                                           "device=cpu", *overrides])


def missing(tmp_path: Path, *overrides: str) -> str:
    with pytest.raises(MissingWeightsError) as err:
        run_inference(infer_cfg(tmp_path, *overrides))
    assert not (tmp_path / "out").exists()  # found before anything was written
    return str(err.value)


def test_every_missing_inference_weight_in_one_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # as if not installed
    lines = missing(tmp_path, f"input={PHOTO_RGB}").splitlines()  # an RGB photo: every stage is needed
    weights = tmp_path / "weights"
    assert lines[0] == "5 weights are missing (nothing was run):"
    expected = [  # (what, exact path, how to get it), in the order the run would need them
        (f"GS-LRM checkpoint not found at {weights}/gslrm/ckpt_0000000000021125.pt (gslrm.ckpt)", "wlyu/OpenFaceLift"),
        (f"MVDiffusion pipeline folder not found at {weights}/mvdiffusion/pipeckpts (mvdiffusion.ckpt)",
         "wlyu/OpenFaceLift"),
        (f"MVDiffusion per-view prompt embeddings not found at "
         f"{weights}/mvdiffusion/fixed_prompt_embeds_6view/clr_embeds.pt", "clr_embeds.pt there"),
        (f"rembg's u2net background-removal model not found at {weights}/rembg/u2net.onnx", "rembg project's GitHub"),
        ("face detection (auto_crop) needs facenet-pytorch, which is not installed",
         "pip install --no-deps facenet-pytorch==2.6.0"),
    ]
    assert len(lines) == 1 + len(expected)
    for line, (start, how) in zip(lines[1:], expected):
        assert line.startswith(f"  - {start}") and how in line, line


def test_only_the_weights_the_inputs_use_are_asked_for(tmp_path):
    sample = SAMPLE / "gslrm" / "sample_000"  # posed views: no MVDiffusion, no preprocessing
    only = missing(tmp_path, f"input={sample}")
    assert only.startswith("GS-LRM checkpoint not found at") and "\n" not in only  # one: its own sentence
    rgba = missing(tmp_path, f"input={PHOTO_RGBA}", RANDOM_GSLRM, "allow_random_init=true")
    assert "u2net" not in rgba and "MVDiffusion pipeline folder" in rgba  # its alpha is the mask: no rembg
    assert "u2net" not in missing(tmp_path, f"input={PHOTO_RGB}", "background=threshold", RANDOM_GSLRM,
                                  "allow_random_init=true")


def test_a_path_the_user_gave_is_not_found_or_of_the_wrong_kind(tmp_path):
    given = tmp_path / "elsewhere" / "my_run.ckpt"
    text = missing(tmp_path, f"input={SAMPLE / 'gslrm' / 'sample_000'}", f"gslrm.ckpt={given}")
    assert text == f"GS-LRM checkpoint not found at {given} (gslrm.ckpt); check the path"  # no download advice
    text = missing(tmp_path, f"input={SAMPLE / 'gslrm' / 'sample_000'}", f"gslrm.ckpt={tmp_path}")
    assert text == f"GS-LRM checkpoint: {tmp_path} is a folder, not a file; point gslrm.ckpt at the file itself"
    text = missing(tmp_path, f"input={PHOTO_RGB}", "background=threshold", RANDOM_GSLRM, "allow_random_init=true",
                   f"mvdiffusion.ckpt={PHOTO_RGB}", f"mvdiffusion.prompt_embeds={tmp_path / 'mine.pt'}")
    assert text.splitlines()[1:] == [
        f"  - MVDiffusion pipeline folder: {PHOTO_RGB} is a file, not a folder; point mvdiffusion.ckpt at the "
        "folder itself",
        f"  - MVDiffusion per-view prompt embeddings not found at {tmp_path / 'mine.pt'} (mvdiffusion.prompt_embeds); "
        "check the path"]


def test_random_weights_and_the_input_must_be_given(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as err:
        run_inference(infer_cfg(tmp_path, f"input={PHOTO_RGB}", RANDOM_GSLRM))
    assert str(err.value) == ("allow_random_init=false: gslrm.random builds a model with RANDOM weights; add "
                              "allow_random_init=true to mean it (tests and benchmarks only)")
    with pytest.raises(ConfigError, match=r"^input=\?\?\?: no input given; add input=PATH"):
        run_inference(infer_cfg(tmp_path))
    with pytest.raises(InputError) as err:
        run_inference(infer_cfg(tmp_path, f"input={tmp_path / 'nowhere.png'}"))
    assert str(err.value) == f"{tmp_path / 'nowhere.png'}: not found (input=)"
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(MissingWeightsError) as err:  # the preprocessor alone says the same as the start-up check
        Preprocessor(PreprocessSettings(background="threshold"))(PHOTO_RGB)
    assert "pip install --no-deps facenet-pytorch==2.6.0" in str(err.value) and "auto_crop=false" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, line", [
    ([], "error: input=???: must be given on the command line (usage: python infer.py input=PATH"),
    ([f"input={PHOTO_RGB}", RANDOM_GSLRM], "error: allow_random_init=false: gslrm.random builds a model with RANDOM"),
])
def test_cli_says_what_is_missing_in_one_line(tmp_path, overrides, line):
    run = subprocess.run([sys.executable, "infer.py", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'r'}",
                          *overrides], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(line)
