"""Official FaceLift checkpoints <-> this project: key mapping, round trips, architecture errors, safe loading."""

from __future__ import annotations

import argparse
import runpy

import pytest
import torch

from facelift.errors import InputError
from facelift.models.gslrm import GSLRM
from facelift.models.gslrm.checkpoint import (EXTRA_PREFIX, load_official_into, project_to_official, read_state,
                                              save_official, save_project)

from conftest import REFERENCE, REPO

TINY = dict(patch_size=8, d=64, d_head=16, n_layer=2, n_gaussians=2, sh_degree=0)
VGG_KEY = EXTRA_PREFIX + "perceptual_loss_module.net.conv1.weight"


def official_keys() -> list[tuple[str, list[int]]]:
    rows = [line.split("\t") for line in (REFERENCE / "gslrm_state_dict_keys.txt").read_text().splitlines() if line]
    return [(name, eval(shape)) for name, shape in rows]  # shapes are written as Python lists


@pytest.fixture()
def official_ckpt(tmp_path):
    """The tiny fixture's official checkpoint plus two loss-network entries, as FaceLift saves it."""
    fixture = torch.load(REFERENCE / "gslrm_tiny_parity.pt", weights_only=True)
    model = dict(fixture["checkpoint"]["model"])
    model[VGG_KEY] = torch.randn(64, 3, 3, 3)
    model[EXTRA_PREFIX + "perceptual_loss_module.net.conv1.bias"] = torch.randn(64)
    path = tmp_path / "ckpt_0000000000001000.pt"
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": []}, "step": 1000}, path)
    return path, model


def test_full_size_keys_and_shapes_match_facelift_without_allocating():
    with torch.device("meta"):
        net = GSLRM()  # 303.6 M parameters, no memory
    ours = [(k, list(v.shape)) for k, v in project_to_official(net.state_dict()).items()]
    reference = [(k, s) for k, s in official_keys() if not k.startswith(EXTRA_PREFIX)]
    assert len(reference) == 3 + 24 * 6 + 4 and ours == reference  # same names, shapes and order
    assert sum(k.startswith(EXTRA_PREFIX) for k, _ in official_keys()) == 32  # VGG19: 16 convs, what load_official_into hands back


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip_official_project_official_is_identical(official_ckpt, tmp_path, suffix):
    path, model = official_ckpt
    state, extras, layout = read_state(path)
    assert layout == "official" and set(extras) == {k for k in model if k.startswith(EXTRA_PREFIX)}
    project_file = save_project(tmp_path / f"gslrm{suffix}", state, extras)
    state2, extras2, layout2 = read_state(project_file)
    assert layout2 == "project"
    back = torch.load(save_official(tmp_path / "back.pt", state2, extras2), weights_only=True)["model"]
    assert set(back) == set(model)
    assert [k for k in back if not k.startswith(EXTRA_PREFIX)] == [k for k in model if not k.startswith(EXTRA_PREFIX)]
    for key, value in model.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_load_into_returns_extras_and_reproduces_lightning_layout(official_ckpt, tmp_path):
    path, model = official_ckpt
    net = GSLRM(**TINY)
    extras = load_official_into(net, path)
    assert torch.equal(extras[VGG_KEY], model[VGG_KEY])
    assert torch.equal(net.transformer.blocks[1].attn.qkv.weight, model["transformer_layers.1.attn.to_qkv.weight"])
    # a Lightning checkpoint of a system holding the network as `net` loads the same weights
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "global_step": 5}, lightning)
    other = GSLRM(**TINY)
    assert load_official_into(other, lightning) == {}
    for (k, a), b in zip(net.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("arch, message", [
    (dict(TINY, d=32), "'gaussian_position_embeddings' has shape [2, 64] in the checkpoint but [2, 32] in this model"),
    (dict(TINY, n_layer=3), "the checkpoint lacks 'transformer_layers.2.norm1.weight', which this model"),
    (dict(TINY, n_layer=1), "the checkpoint holds 'transformer_layers.1.norm1.weight' [64], which this model"),
    (dict(TINY, sh_degree=1), "'gaussian_upsampler.linear.weight' has shape [14, 64] in the checkpoint but [23, 64]"),
])
def test_wrong_architecture_is_one_sentence_naming_key_and_shapes(official_ckpt, arch, message):
    path, _ = official_ckpt
    with pytest.raises(InputError) as err:
        load_official_into(GSLRM(**arch), path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_checkpoint_that_needs_code_to_unpickle_is_refused(tmp_path):
    path = tmp_path / "ckpt_legacy.pt"  # e.g. a training config object saved beside the weights
    torch.save({"model": {"learned_tokens": torch.zeros(2, 64)}, "config": argparse.Namespace(lr=4e-4)}, path)
    with pytest.raises(InputError, match="refused because loading it could run arbitrary code"):
        load_official_into(GSLRM(**TINY), path)


def test_convert_script_both_directions(official_ckpt, tmp_path):
    path, model = official_ckpt
    convert_main = runpy.run_path(str(REPO / "scripts" / "convert_checkpoint.py"))["main"]
    assert convert_main([str(path), str(tmp_path / "gslrm.safetensors")]) == 0
    assert read_state(tmp_path / "gslrm.safetensors")[2] == "project"
    assert convert_main([str(tmp_path / "gslrm.safetensors"), str(tmp_path / "ckpt.pt")]) == 0
    back = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert set(back) == {"model"} and all(torch.equal(back["model"][k], v) for k, v in model.items())
