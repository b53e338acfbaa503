"""reports.curves: a run's loss per epoch (from its train_log.csv) as a reproducible PNG."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.curves import loss_columns, plot_training_curves


def _log(path, **columns):
    frame = pd.DataFrame({"epoch": [0, 1, 2, 3], "seconds": [1.0, 1.1, 0.9, 1.0], **columns})
    frame.to_csv(path, index=False)
    return path


def test_loss_columns_are_the_loss_terms_whatever_the_method():
    log = pd.DataFrame(columns=["epoch", "loss_perceptual", "lr_generator", "loss_equivariance_value",
                                "seconds", "loss_warp", "losses"])
    assert loss_columns(log) == ["loss_perceptual", "loss_equivariance_value", "loss_warp"]
    assert loss_columns(pd.DataFrame(columns=["epoch"])) == []


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot makes, kept open for inspection after it closes them."""
    import matplotlib.pyplot as plt

    kept = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    for fig in kept:
        close(fig)


def test_one_line_per_loss_term_against_the_epoch_on_a_log_scale(tmp_path, figures):
    log = _log(tmp_path / "train_log.csv", loss_perceptual=[9.0, 5.0, 3.0, 2.5],
               loss_equivariance_value=[0.5, 0.3, 0.2, 0.1])
    out = plot_training_curves(log, tmp_path / "curves" / "synthetic" / "fomm.png", title="fomm")
    assert out == tmp_path / "curves" / "synthetic" / "fomm.png"
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (600, 360)  # 6 x 3.6 in at 100 dpi
    assert np.asarray(image.convert("L")).std() > 0  # something is drawn
    (figure,) = figures
    (axes,) = figure.axes
    assert [line.get_label() for line in axes.lines] == ["perceptual", "equivariance_value"]
    assert list(axes.lines[0].get_xdata()) == [0, 1, 2, 3]
    assert list(axes.lines[1].get_ydata()) == [0.5, 0.3, 0.2, 0.1]
    assert axes.get_yscale() == "log" and axes.get_title() == "fomm"
    assert axes.get_xlabel() == "epoch"
    assert matplotlib.get_backend().lower() == "agg"  # no display needed


def test_a_zero_or_negative_loss_keeps_a_linear_scale(tmp_path, figures):
    log = _log(tmp_path / "train_log.csv", loss_perceptual=[1.0, 0.5, 0.2, 0.1],
               loss_background=[0.0, 0.0, 0.1, 0.05])
    plot_training_curves(log, tmp_path / "out.png")
    assert figures[0].axes[0].get_yscale() == "linear"


def test_the_same_log_gives_the_same_bytes(tmp_path):
    log = _log(tmp_path / "train_log.csv", loss_perceptual=[4.0, 3.0, 2.0, 1.0])
    first = plot_training_curves(log, tmp_path / "a.png").read_bytes()
    second = plot_training_curves(log, tmp_path / "b.png").read_bytes()
    assert first == second  # no date or software version in the file
    assert b"Software" not in first
    other = _log(tmp_path / "other.csv", loss_perceptual=[4.0, 3.0, 2.0, 1.5])
    assert plot_training_curves(other, tmp_path / "c.png").read_bytes() != first


def test_an_existing_png_is_replaced_atomically(tmp_path):
    log = _log(tmp_path / "train_log.csv", loss_perceptual=[4.0, 3.0, 2.0, 1.0])
    out = tmp_path / "fomm.png"
    out.write_bytes(b"old")
    plot_training_curves(log, out)
    assert out.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fomm.png", "train_log.csv"]


@pytest.mark.parametrize("columns", [["epoch", "seconds"], ["step", "loss_perceptual"]])
def test_a_file_that_is_not_a_train_log_is_refused(tmp_path, columns):
    path = tmp_path / "x.csv"
    pd.DataFrame([[1, 2]], columns=columns).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"x\.csv: no 'epoch' and 'loss_\*' columns"):
        plot_training_curves(path, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
