"""Train a system: `python train.py [experiment=NAME] [key=value ...]` (see conf/train.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from facelift.errors import exit_on_user_error
from facelift.resolvers import register_resolvers
from facelift.run import train

register_resolvers(Path(__file__).resolve().parent)  # ${facelift_root:}: this checkout, from any cwd


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
