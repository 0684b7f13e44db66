"""The multi-view UNet: parity with FaceLift's original, full-size keys, attention, config mapping, loading."""

import subprocess
import sys

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from conftest import REFERENCE, REPO
from facelift.errors import InputError
from facelift.models.mvdiffusion import architecture
from facelift.models.mvdiffusion.attention import MultiViewAttnProcessor
from facelift.models.mvdiffusion.parity import check
from facelift.models.mvdiffusion.unet import MultiViewSettings, MultiViewUNet, build_unet, load_unet, split_config

FIXTURE = REFERENCE / "mvdiffusion_unet_tiny_parity.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def test_parity_with_facelift_unet(fixture, tmp_path):
    errors = check(fixture, tmp_path)
    assert errors["unet_output"] <= 1e-4
    assert (tmp_path / "mvdiffusion_unet_output.pt").is_file()


@pytest.mark.slow
def test_parity_cli_exits_zero(tmp_path):
    run = subprocess.run([sys.executable, "-m", "facelift.tools.parity", str(FIXTURE), "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout


def test_fixture_is_sparse_and_other_variants_differ(fixture):
    unet = build_unet(fixture["config"]).eval()
    unet.load_state_dict(fixture["state_dict"], strict=True)
    assert unet.settings == MultiViewSettings(num_views=6, multiview_attention=True, sparse_mv_attention=True)
    for other in (MultiViewSettings(6, True, False), MultiViewSettings(6, False, False)):
        unet.set_multiview(other)
        with torch.no_grad():
            out = unet(**fixture["inputs"]).sample
        assert (out - fixture["output"]).abs().max() > 1e-2  # dense / per-view attention compute something else


def test_full_size_keys_and_shapes_match_reference():
    stock, settings, _ = split_config(architecture.UNET)
    with torch.device("meta"):
        unet = MultiViewUNet.from_config(stock)
    ours = {k: list(v.shape) for k, v in unet.state_dict().items()}
    lines = (REFERENCE / "mvdiffusion_unet_state_dict_keys.txt").read_text().splitlines()
    ref = {k: eval(s) for k, s in (line.split("\t") for line in lines if line and not line.startswith("#"))}
    assert ours == ref
    assert sum(p.numel() for p in unet.parameters()) == 870_184_644


def _attention(dim=8, heads=2):
    torch.manual_seed(0)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads).eval()


def _reference_attention(attn, x, keys_of):  # explicit per-entry attention over chosen entries' tokens
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)  # [N, n, c]
    h, d = attn.heads, q.shape[-1] // attn.heads
    outs = []
    for i in range(x.shape[0]):
        ks = torch.cat([k[j] for j in keys_of(i)]).view(-1, h, d).transpose(0, 1)  # [h, m, d]
        vs = torch.cat([v[j] for j in keys_of(i)]).view(-1, h, d).transpose(0, 1)
        qi = q[i].view(-1, h, d).transpose(0, 1)  # [h, n, d]
        w = torch.softmax(qi @ ks.transpose(1, 2) / d ** 0.5, dim=-1)
        outs.append((w @ vs).transpose(0, 1).reshape(-1, h * d))
    return attn.to_out[0](torch.stack(outs))


@pytest.mark.parametrize("sparse", [True, False])
def test_multiview_processor_matches_explicit_attention(sparse):
    attn, t = _attention(), 3
    x = torch.randn(2 * t, 5, 8)  # 2 objects x 3 views, 5 tokens each
    attn.set_processor(MultiViewAttnProcessor(num_views=t, sparse=sparse))
    with torch.no_grad():
        out = attn(x)
        obj = lambda i: i // t * t  # noqa: E731 - first entry of entry i's object
        keys = (lambda i: [obj(i), i]) if sparse else (lambda i: list(range(obj(i), obj(i) + t)))
        ref = _reference_attention(attn, x, keys)
    assert torch.allclose(out, ref, atol=1e-5)


def test_sparse_views_see_only_front_and_themselves():
    attn, t = _attention(), 6
    attn.set_processor(MultiViewAttnProcessor(num_views=t, sparse=True))
    x = torch.randn(t, 4, 8)
    y = x.clone()
    y[3] += 1.0  # change the back view only
    with torch.no_grad():
        a, b = attn(x), attn(y)
    changed = (a - b).abs().amax(dim=(1, 2)) > 1e-6
    assert changed.tolist() == [False, False, False, True, False, False]
    y = x.clone()
    y[0] += 1.0  # the front view is everyone's reference
    with torch.no_grad():
        assert ((attn(y) - a).abs().amax(dim=(1, 2)) > 1e-6).all()


def test_facelift_config_is_mapped_and_unknown_features_refused(fixture):
    stock, settings, zero_init = split_config(fixture["config"])
    assert stock["down_block_types"][0] == "CrossAttnDownBlock2D"
    assert stock["mid_block_type"] == "UNetMidBlock2DCrossAttn"
    assert "num_views" not in stock and settings.num_views == 6 and settings.sparse_mv_attention and zero_init
    with pytest.raises(ValueError, match="cd_attention_last"):
        split_config({**fixture["config"], "cd_attention_last": True})


def test_load_unet_widens_a_4_channel_sd_unet(fixture, tmp_path):
    stock, _, _ = split_config(fixture["config"])
    torch.manual_seed(0)
    sd_unet = UNet2DConditionModel.from_config({**stock, "in_channels": 4})
    sd_unet.save_pretrained(tmp_path / "unet")
    unet = load_unet(tmp_path / "unet", overrides={"in_channels": 8, "num_views": 6, "sparse_mv_attention": True})
    w, w4 = unet.conv_in.weight, sd_unet.conv_in.weight
    assert w.shape[1] == 8 and torch.equal(w[:, :4], w4) and w[:, 4:].abs().sum() == 0
    assert unet.settings.sparse_mv_attention and unet.settings.num_views == 6
    bad = {**stock, "in_channels": 4, "cross_attention_dim": 16}  # weights that cannot fit the config
    UNet2DConditionModel.from_config(bad).save_pretrained(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text((tmp_path / "unet" / "config.json").read_text())
    with pytest.raises(InputError, match="wrong shape"):
        load_unet(tmp_path / "bad")
