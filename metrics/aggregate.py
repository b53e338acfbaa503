"""Aggregation of per-frame metrics, the two ways results are reported."""

from __future__ import annotations

import pandas as pd


def metric_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("video", "frame")]


def frame_weighted(table: pd.DataFrame) -> dict[str, float]:
    """Mean over all frames of all videos, as the literature reports (long videos weigh more)."""
    return {c: float(table[c].mean()) for c in metric_columns(table)}


def per_video(table: pd.DataFrame) -> dict[str, float]:
    """Mean of the per-video means (every video weighs the same)."""
    return {c: float(v) for c, v in table.groupby("video")[metric_columns(table)].mean().mean().items()}
