"""Reconstruct photos (or sample folders) in 3D: `python infer.py input=PATH [rig=mouse] [key=value ...]`
(see conf/infer.yaml and README "Inference"). Exit status 2 with one line on stderr when an input or a weight file
is bad; a folder input processes every other input first."""

import hydra
from omegaconf import DictConfig

from facelift.errors import exit_on_user_error
from facelift.pipeline import run_inference
from facelift.resolvers import register_resolvers
from facelift.viewer import view_command

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    if run_inference(cfg):  # what it wrote, to turn around in the browser
        print(f"view the Gaussians: {view_command(cfg.output_dir)}")


if __name__ == "__main__":
    main()
