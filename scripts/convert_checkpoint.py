"""Convert GS-LRM weights between FaceLift's checkpoint layout and this project's, in either direction.

    python scripts/convert_checkpoint.py ckpt_0000000000021125.pt gslrm.safetensors         # official -> project
    python scripts/convert_checkpoint.py outputs/train/.../last.ckpt ckpt_finetuned.pt       # project -> official

Official: ``{"model": state dict}`` with FaceLift's names (what FaceLift's code loads); the optimizer state is not
carried over. Project: a flat dict of this project's names (``.safetensors`` by suffix, else ``torch.save``); a
Lightning checkpoint of a GS-LRM system is read too. The VGG19 of the perceptual loss (``loss_calculator.*``) is
kept as it is in both directions. The weight mapping is `facelift.models.gslrm.checkpoint.RENAMES`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelift.errors import InputError, exit_on_user_error
from facelift.models.gslrm.checkpoint import ARCH_FIELDS, convert


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="weights to read (either layout, .pt/.ckpt/.safetensors)")
    parser.add_argument("dst", type=Path, help="file to write")
    parser.add_argument("--to", choices=["official", "project"], help="output layout (default: the other one)")
    args = parser.parse_args(argv)
    if not args.src.is_file():
        raise InputError(args.src, "checkpoint not found")
    to, config = convert(args.src, args.dst, args.to)
    arch = ", ".join(f"{k}={getattr(config, k)}" for k in ARCH_FIELDS if k != "d_head")  # d_head is not stored
    print(f"wrote {args.dst} ({to} layout): GS-LRM {arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
