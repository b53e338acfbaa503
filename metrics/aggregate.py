"""Aggregation of per-frame metrics, the two ways results are reported.

A NaN value is a frame the metric skipped (its reason is in ``<metric>_skip``): means are over
the frames that were measured, and :func:`skipped_frames` / :func:`measured_frames` say how many
were not. MKR is averaged as the per-frame ratio (the pose-evaluation code's way); its numerator
and denominator columns (``mkr_missing``, ``mkr_present``) are kept so :func:`pooled_mkr` and any
other aggregation can be recomputed exactly.
"""

from __future__ import annotations

import pandas as pd

METRICS = ("l1", "akd", "mkr", "aed")


def metric_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in METRICS if c in table.columns]


def frame_weighted(table: pd.DataFrame) -> dict[str, float]:
    """Mean over all measured frames of all videos, as the literature reports (long videos weigh more)."""
    return {c: float(table[c].mean()) for c in metric_columns(table)}


def per_video(table: pd.DataFrame) -> dict[str, float]:
    """Mean of the per-video means (every video with a measured frame weighs the same)."""
    columns = metric_columns(table)
    return {c: float(v) for c, v in table.groupby("video")[columns].mean().mean().items()}


def measured_frames(table: pd.DataFrame) -> dict[str, int]:
    return {c: int(table[c].notna().sum()) for c in metric_columns(table)}


def skipped_frames(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{metric: {reason: frames}}`` for every metric that skipped a frame."""
    out = {}
    for c in metric_columns(table):
        column = f"{c}_skip"
        if column in table.columns:
            reasons = table[column].fillna("").astype(str)
            counts = reasons[reasons != ""].value_counts()
            if len(counts):
                out[c] = {str(k): int(v) for k, v in counts.items()}
    return out


def pooled_mkr(table: pd.DataFrame) -> float:
    """All missing joints ÷ all ground-truth joints (weights frames by their joint count)."""
    return float(table["mkr_missing"].sum() / table["mkr_present"].sum())
