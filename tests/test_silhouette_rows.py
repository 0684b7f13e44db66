"""Issue 27's study rows: each composes with the Hydra config into the loss and data it says, at equal steps, and
the driver prepares the cropped set, scores random-background rows on white and resumes a stopped row."""

import sys

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import REPO
from facelift.losses import GSLRMLoss

sys.path.insert(0, str(REPO / "scripts"))
import mouse_study  # noqa: E402

ROWS = {r.name: r for r in mouse_study.study_rows()}
SILHOUETTE = [r.name for r in mouse_study.silhouette_rows()]


def compose_row(name: str):
    row = ROWS[name]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={row.experiment}", *row.overrides, f"paths.root_dir={REPO}",
                                           "paths.output_dir=/tmp/unused"])


def recipe(name: str) -> tuple:
    cfg = compose_row(name)
    return (cfg.loss.alpha_loss_weight, cfg.loss.foreground_weight, cfg.data.background_color,
            ROWS[name].prepared)


def test_rows_compose_into_the_recipes_they_name():
    assert SILHOUETTE == ["before_silhouette", "silhouette", "silhouette_fgw", "silhouette_fgw_crop",
                          "silhouette_fgw_random_bg", "silhouette_fgw_crop_random_bg", "best_long"]
    assert recipe("before_silhouette") == (0.0, None, "white", "prepared")
    assert recipe("silhouette") == (1.0, None, "white", "prepared")
    assert recipe("silhouette_fgw") == (1.0, 0.5, "white", "prepared")
    assert recipe("silhouette_fgw_crop") == (1.0, 0.5, "white", "prepared_crop")
    assert recipe("silhouette_fgw_random_bg") == (1.0, 0.5, "random", "prepared")
    assert recipe("silhouette_fgw_crop_random_bg") == recipe("best_long") == (1.0, 0.5, "random", "prepared_crop")
    for name in SILHOUETTE:
        cfg = compose_row(name)
        assert cfg.loss.alpha_loss == "l1" and (cfg.loss.l2_loss_weight, cfg.loss.ssim_loss_weight) == (1.0, 0.5)
        loss = instantiate(cfg.loss)  # builds without any weight file
        assert isinstance(loss, GSLRMLoss) and loss.needs_alpha == (name != "before_silhouette")
        instantiate(cfg.data, _convert_="all")  # the data module checks every setting
        # equal budgets: the experiment's steps for every row, three times that for the long one
        assert cfg.trainer.max_steps == (30000 if name == "best_long" else 10000)
    scored_on_white = {n for n in SILHOUETTE if "data.background_color=white" in ROWS[n].eval_overrides}
    assert scored_on_white == {"silhouette_fgw_random_bg", "silhouette_fgw_crop_random_bg", "best_long"}


def test_the_experiments_carry_the_silhouette_recipe():
    cfg = compose_row("scratch")  # mouse_gslrm_scratch as it is
    assert (cfg.loss.alpha_loss_weight, cfg.loss.alpha_loss, cfg.loss.foreground_weight) == (1.0, "l1", 0.5)
    assert recipe("silhouette_fgw")[:3] == (cfg.loss.alpha_loss_weight, cfg.loss.foreground_weight,
                                            cfg.data.background_color)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        v2 = compose("train", overrides=["experiment=mouse_gslrm_v2", f"paths.root_dir={REPO}",
                                         "paths.output_dir=/tmp/unused"])
        scored = compose("eval", overrides=["ckpt=x.ckpt", "data.background_color=white", f"paths.root_dir={REPO}"])
    assert (v2.loss.alpha_loss_weight, v2.loss.foreground_weight, v2.loss.lpips_loss_weight) == (1.0, 0.5, 1.0)
    assert scored.data.background_color == "white"  # eval.py can score a random-background run on white


def test_driver_prepares_the_crops_scores_on_white_and_resumes(tmp_path):
    out = tmp_path / "study"
    stopped = out / "runs" / "best_long" / "checkpoints"
    stopped.mkdir(parents=True)
    (stopped / "last.ckpt").write_bytes(b"")  # a row stopped by a command's time limit
    (stopped.parent / "csv").mkdir()
    (stopped.parent / "csv" / "metrics.csv").write_text("step\n0\n")
    args = ["--out", out, "--rows", "before_silhouette,silhouette_fgw_crop,silhouette_fgw_random_bg,best_long",
            "--dry-run"]
    assert mouse_study.main([str(a) for a in args]) == 0
    lines = (out / "commands.sh").read_text().splitlines()
    prepares = [c for c in lines if "prepare_mouse_data.py" in c]
    assert len(prepares) == 2 and f"--dst {out / 'prepared_crop'}" in prepares[1]
    assert prepares[1].endswith("--crop animal --margin 0.15") and "--crop" not in prepares[0]
    train = {r: next(c for c in lines if f"hydra.run.dir={out / 'runs' / r}" in c) for r in args[3].split(",")}
    evals = {r: next(c for c in lines if f"hydra.run.dir={out / 'eval' / r}" in c) for r in args[3].split(",")}
    assert f"data.data_dir={out / 'prepared_crop'} " in train["silhouette_fgw_crop"]
    assert f"data.data_dir={out / 'prepared'} " in train["before_silhouette"]
    assert "data.background_color=white" in evals["silhouette_fgw_random_bg"]
    assert "background_color" not in evals["before_silhouette"]
    assert f"ckpt_path={stopped / 'last.ckpt'}" in train["best_long"] and "ckpt_path" not in train["silhouette_fgw_crop"]
    assert (stopped.parent / "csv" / "metrics.csv").is_file()  # a dry run moves nothing
