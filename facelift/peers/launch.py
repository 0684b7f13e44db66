"""Run one of a peer's scripts unmodified, with what this machine lacks put in front of it for that process only.

    python -m facelift.peers.launch [--scatter-shim] [--gsplat] SCRIPT [ARGS ...]

``--scatter-shim``: ``facelift/peers/shims`` goes first on ``sys.path``, so ``import torch_scatter`` finds the shim
(`facelift.peers.shims.torch_scatter`) instead of a package no PyPI wheel provides for this torch.
``--gsplat``: gsplat's CUDA extension is loaded before the script runs: the ``gsplat_cuda.so`` named by
``FACELIFT_GSPLAT_SO`` when set (`facelift.render.gsplat_backend`), else gsplat's JIT build, made now under this
process's ``TORCH_CUDA_ARCH_LIST`` (Pose Splatter's scripts set it to 8.6 at import, which would build kernels an
H100 cannot run). The script then runs as ``__main__`` with its own folder first on the path, as ``python SCRIPT``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "shims"


def main(argv: list[str]) -> None:
    scatter, gsplat = "--scatter-shim" in argv[:2], "--gsplat" in argv[:2]
    rest = [a for a in argv[:2] if a not in ("--scatter-shim", "--gsplat")] + argv[2:]
    if not rest:
        sys.exit("usage: python -m facelift.peers.launch [--scatter-shim] [--gsplat] SCRIPT [ARGS ...]")
    script = Path(rest[0]).resolve()
    if scatter:
        sys.path.insert(0, str(SHIMS))
    if gsplat:
        from facelift.render.gsplat_backend import gsplat_extension

        if gsplat_extension() is None:
            sys.exit("error: gsplat's CUDA extension is unavailable (see the warning above); Pose Splatter renders "
                     "with it")
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *rest[1:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
