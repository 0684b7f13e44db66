"""The unCLIP multi-view pipeline on a tiny random model: views, determinism, CFG, loading a local folder."""

import copy
import shutil

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from transformers import CLIPImageProcessor

from conftest import REPO, SAMPLE
from facelift.errors import MissingWeightsError
from facelift.image_io import composite, read_image
from facelift.models.mvdiffusion import build_random_pipeline, load_pipeline, load_prompt_embeds

TINY = REPO / "conf/model/pipeline/random_tiny.yaml"


@pytest.fixture(scope="module")
def pipe():
    return hydra.utils.instantiate(OmegaConf.load(TINY), _convert_="all")


@pytest.fixture(scope="module")
def face() -> torch.Tensor:  # the public sample's front view on white, at the tiny size
    rgb = composite(read_image(SAMPLE / "mvdiffusion/sample_000/cam_000.png"), 1.0)
    return torch.nn.functional.interpolate(rgb[None], size=(64, 64), mode="bilinear", antialias=True)[0]


def test_six_views_of_the_requested_size_deterministic_per_seed(pipe, face):
    a = pipe(face, num_inference_steps=2, guidance_scale=3.0, seed=4)
    b = pipe(face, num_inference_steps=2, guidance_scale=3.0, seed=4)
    c = pipe(face, num_inference_steps=2, guidance_scale=3.0, seed=5)
    assert a.shape == (1, 6, 3, 64, 64) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    small = pipe(face, num_inference_steps=2, seed=4, height=32, width=32)  # the input follows the requested size
    assert small.shape == (1, 6, 3, 32, 32)


def test_guidance_changes_the_result(pipe, face):
    off = pipe(face, num_inference_steps=2, guidance_scale=1.0, seed=4)
    on = pipe(face, num_inference_steps=2, guidance_scale=3.0, seed=4)
    assert (off - on).abs().max() > 1e-3


def test_views_differ_per_prompt_and_batches_are_independent(pipe, face):
    one = pipe(face, num_inference_steps=2, seed=4)
    assert (one[0, 0] - one[0, 3]).abs().max() > 1e-3  # each view has its own prompt and noise
    two = pipe(torch.stack([face, face.flip(-1)]), num_inference_steps=2, seed=4)
    assert two.shape == (2, 6, 3, 64, 64)
    assert (two[0] - two[1]).abs().max() > 1e-3


def test_random_weights_need_the_explicit_flag():
    cfg = OmegaConf.to_container(OmegaConf.load(TINY))
    with pytest.raises(ValueError, match="allow_random_init"):
        build_random_pipeline(cfg["unet"], cfg["vae"], cfg["image_encoder"], allow_random_init=False)


def _save_folder(pipe, root):
    for name in ("unet", "vae", "image_encoder", "image_normalizer", "image_noising_scheduler", "scheduler"):
        getattr(pipe, name).save_pretrained(root / name)
    size = pipe.clip.size
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(
        root / "feature_extractor")
    torch.save(pipe.prompt_embeds.clone(), root / "prompts.pt")


def test_local_folder_loads_and_generates_the_same_views(pipe, face, tmp_path):
    _save_folder(pipe, tmp_path)
    loaded = load_pipeline(tmp_path, tmp_path / "prompts.pt")
    assert type(loaded.scheduler) is type(pipe.scheduler) and loaded.clip == pipe.clip
    a = pipe(face, num_inference_steps=2, seed=4)
    b = loaded(face, num_inference_steps=2, seed=4)
    assert (a - b).abs().max() < 1e-5
    ddpm = load_pipeline(tmp_path, tmp_path / "prompts.pt", scheduler_class="DDPMScheduler")
    assert type(ddpm.scheduler).__name__ == "DDPMScheduler"


def test_missing_subfolder_is_one_sentence_naming_it(pipe, tmp_path):
    _save_folder(pipe, tmp_path)
    shutil.rmtree(tmp_path / "vae")
    with pytest.raises(MissingWeightsError) as err:
        load_pipeline(tmp_path, tmp_path / "prompts.pt")
    message = str(err.value)
    assert "vae/" in message and str(tmp_path / "vae") in message and "\n" not in message
    with pytest.raises(MissingWeightsError, match="pipeline folder"):
        load_pipeline(tmp_path / "nowhere", tmp_path / "prompts.pt")
    with pytest.raises(MissingWeightsError, match="prompt embeddings"):
        load_prompt_embeds(tmp_path / "no_prompts.pt")


def test_facelift_prompt_embeddings_read_as_six_views():
    embeds = load_prompt_embeds(SAMPLE / "mvdiffusion_color_prompt_embeds.pt")
    assert embeds.shape == (6, 77, 1024) and embeds.dtype == torch.float32
    assert (embeds[0] - embeds[3]).abs().max() > 0.1  # front and back prompts differ


def test_channels_last_speed_up_keeps_the_views(pipe, face):
    fast = copy.deepcopy(pipe).speed_up(compile_mode=None, channels_last=True)
    assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    a = pipe(face, num_inference_steps=2, seed=4)
    b = fast(face, num_inference_steps=2, seed=4)
    assert (a - b).abs().max() < 1e-4
