"""Write a synthetic dataset in the FaceLift sample-folder layout, rendered with the project's own renderer.

    python scripts/make_synthetic.py --out data/synthetic_human --rig human --num-samples 64 --size 128 --seed 0
    python scripts/make_synthetic.py --out data/synthetic_mouse_raw --rig mouse --num-samples 64 --seed 0

human: head-like busts on FaceLift's training ring (``--num-views`` cameras at 2.7, elevation 20 deg, Z up, hfov 50),
square ``--size`` images (default 512).
mouse: mouse-like animals on a raw six-camera rig like the lab's (uneven, off-centre, tilted; 288 x 256, or
``--size`` wide; frames carry ``view_id``); prepare it with ``scripts/prepare_mouse_data.py --src OUT`` like real
recordings.
Images are RGBA PNGs (masks come from the rendered alpha). Both rigs get ``data_train.txt`` / ``data_val.txt``
(relative paths; the last tenth of the samples, at least one, is the validation list). Sample i depends only on
(seed, i), so a larger ``--num-samples`` extends a smaller set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from facelift.data.sample_folder import write_file_list, write_sample
from facelift.data.synthetic import make_sample
from facelift.errors import exit_on_user_error

TRAIN_LIST, VAL_LIST = "data_train.txt", "data_val.txt"


def sample_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (created)")
    parser.add_argument("--rig", choices=("human", "mouse"), default="human")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--size", type=int, help="image side (human, default 512) or width (mouse, default 288)")
    parser.add_argument("--num-views", type=int, default=32, help="cameras on the human ring")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    samples = []
    start = time.perf_counter()
    for i in range(args.num_samples):
        sample = make_sample(args.rig, sample_seed(args.seed, i), args.size, args.num_views)
        extra = [{"view_id": v} for v in range(len(sample.cameras))] if args.rig == "mouse" else None
        samples.append(write_sample(args.out / f"sample_{i:05d}", sample.images, sample.cameras, extra))
        print(f"{samples[-1].name}: {len(sample.cameras)} views {sample.cameras.width}x{sample.cameras.height} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    n_val = max(1, len(samples) // 10)
    write_file_list(args.out / TRAIN_LIST, samples[:-n_val] or samples)  # one sample: the same in both lists
    write_file_list(args.out / VAL_LIST, samples[-n_val:])
    print(f"wrote {len(samples)} samples, {TRAIN_LIST} and {VAL_LIST} to {args.out}")


if __name__ == "__main__":
    main()
