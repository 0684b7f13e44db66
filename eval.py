"""Evaluate a trained GS-LRM: `python eval.py ckpt=PATH [split=val|test] [key=value ...]` (see conf/eval.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from facelift.errors import exit_on_user_error
from facelift.resolvers import register_resolvers

register_resolvers(Path(__file__).resolve().parent)  # ${facelift_root:}: this checkout, from any cwd


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from facelift.config_check import check_eval_config  # after Hydra parsed the command line: `--help` stays fast
    from facelift.evaluation.evaluator import evaluate
    from facelift.viewer import view_command

    check_eval_config(cfg)
    evaluate(cfg)
    samples = Path(cfg.paths.output_dir) / "samples"
    if any(samples.glob("*/gaussians.ply")):  # what it wrote, to turn around in the browser
        print(f"view the Gaussians: {view_command(samples)}")


if __name__ == "__main__":
    main()
