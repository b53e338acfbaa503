"""Training curves: loss per epoch of a run, from its ``train_log.csv``, as a PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_prep.io import atomic_path


def loss_columns(log: pd.DataFrame) -> list[str]:
    """The per-epoch loss terms the trainer logged (``loss_<name>``), whatever the method."""
    return [c for c in log.columns if c.startswith("loss_")]


def plot_training_curves(train_log: Path, out: Path, title: str = "") -> Path:
    """One line per loss term against the epoch; log-scale when every value is positive."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node or in CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    log = pd.read_csv(train_log)
    columns = loss_columns(log)
    if "epoch" not in log.columns or not columns:
        raise ValueError(f"{train_log}: no 'epoch' and 'loss_*' columns; is it a train_log.csv?")
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    for column in columns:
        axes.plot(log["epoch"], log[column], marker="o", markersize=3, label=column.removeprefix("loss_"))
    if (log[columns] > 0).all().all():
        axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("mean loss over the epoch")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        # metadata without a date: the same log gives the same bytes.
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)
    return out
