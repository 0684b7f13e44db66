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
(seed, i), so a larger ``--num-samples`` extends a smaller set. (The default training job makes its set the same
way on first use: ``data.synthesize`` in conf/data/synthetic.yaml.)
For the mouse study (thousands of distinct animals, lab rigs, an arena, a split by animal): make_mouse_set.py.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from facelift.data.synthetic.blob_scenes import write_dataset
from facelift.errors import exit_on_user_error


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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_dataset(args.out, args.rig, args.num_samples, args.size, args.num_views, args.seed)


if __name__ == "__main__":
    main()
