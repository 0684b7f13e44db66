"""Every plot names its panels and axes: the training curves of scripts/plot_run.py, read back from the figure."""

import matplotlib.pyplot as plt

from facelift.evaluation import curves

HEADER = ("step,epoch,train/loss,train/l2,train/ssim,train/grad_norm,train/skipped_nonfinite,val/psnr,val/psnr_novel,"
          "val/psnr_fg_novel,lr-AdamW")


def test_curve_panels_name_the_loss_and_every_axis(tmp_path, monkeypatch):
    rows = [f"{s},0,{1 / (s + 1)},{0.5 / (s + 1)},{0.2 / (s + 1)},1.0,0,,,,{1e-4}" for s in range(10)]
    rows.append("9,0,,,,,,20.5,19.0,12.5,")
    (tmp_path / "metrics.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    figures = []
    monkeypatch.setattr(curves.plt, "close", figures.append)  # keep the figure to read it back
    out = curves.plot_curves({"run_a": tmp_path / "metrics.csv"}, tmp_path / "curves.png", title="study")
    assert out.is_file()
    figure, = figures
    loss, fg, psnr, lr = figure.axes
    # the loss panel names what it draws: the logged total and its terms (grad norm and skip counts are no terms)
    assert loss.get_title() == "training loss (smoothed)\ntrain/loss: weighted sum of l2, ssim"
    assert (fg.get_title(), psnr.get_title(), lr.get_title()) == (
        "validation PSNR over the foreground", "validation whole-image PSNR", "learning rate")
    assert [ax.get_ylabel() for ax in figure.axes] == [
        "loss (log scale)", "PSNR over the foreground (dB)", "whole-image PSNR (dB)", "learning rate (log scale)"]
    # each PSNR lands in its own panel: the foreground value only in the foreground panel
    assert [line.get_ydata().tolist() for line in fg.get_lines()] == [[12.5]]
    assert sorted(line.get_ydata().tolist()[0] for line in psnr.get_lines()) == [19.0, 20.5]
    assert all(ax.get_xlabel() == "training step" for ax in figure.axes)
    assert [t.get_text() for t in psnr.get_legend().get_texts()] == ["all views", "novel views",
                                                                       "held-out cameras"]
    assert [t.get_text() for legend in figure.legends for t in legend.get_texts()] == ["run_a"]
    assert figure._suptitle.get_text() == "study"
    plt.close(figure)
