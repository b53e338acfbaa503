"""How sure a number is: intervals over test videos, and paired comparisons of two runs.

A table's number is the frame-weighted mean over the test frames. Frames of one video are not
independent (one identity, one motion), so the unit that is resampled is the video: a bootstrap
draws videos with replacement, keeps each video's frames together, and recomputes the
frame-weighted mean (sum of the drawn videos' frame values / their measured frames). Its 2.5 and
97.5 percentiles are the 95 % interval (``scipy.stats.bootstrap``, percentile method, seeded:
the same inputs give the same interval).

Two runs measured on the same test videos compare per video: the paired bootstrap resamples
videos once for both runs and gives an interval of the difference of their frame-weighted means;
the Wilcoxon signed-rank test over the per-video mean differences is a second opinion. A
difference is *beyond noise* when its interval excludes 0. A constant metric has a zero-width
interval; a run shifted by a constant compares as that constant, exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A frame-weighted mean and its bootstrap interval over ``videos`` test videos."""

    estimate: float
    low: float
    high: float
    videos: int
    confidence: float = CONFIDENCE

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """``b - a`` on the videos both runs measured: the difference, its interval, the verdict."""

    difference: float
    low: float
    high: float
    videos: int
    wilcoxon_p: float
    #: "better", "worse" (for ``b``, lower being better) or "within noise".
    verdict: str

    def swapped(self) -> Comparison:
        """``a - b``: the same paired resamples, so the same numbers negated."""
        verdict = {"better": "worse", "worse": "better"}.get(self.verdict, self.verdict)
        return Comparison(-self.difference, -self.high, -self.low, self.videos, self.wilcoxon_p, verdict)


def video_sums(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per video: the sum of the metric over its measured frames and how many there are."""
    measured = table[["video", metric]].dropna()
    grouped = measured.groupby("video", sort=True)[metric]
    return pd.DataFrame({"sum": grouped.sum(), "count": grouped.count()})


def _constant(values: np.ndarray) -> bool:
    """Equal up to float rounding (a sum of equal values divided back differs in the last bit)."""
    return bool(np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())))


def _ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def _percentile_bootstrap(data: tuple[np.ndarray, ...], statistic, seed: int, confidence: float) -> tuple[float, float]:
    result = stats.bootstrap(
        data, statistic, paired=True, vectorized=True, n_resamples=RESAMPLES,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def interval(table: pd.DataFrame, metric: str, seed: int = SEED, confidence: float = CONFIDENCE) -> Interval:
    """The frame-weighted mean of ``metric`` and its interval over the test videos."""
    per_video = video_sums(table, metric)
    if per_video.empty:
        return Interval(float("nan"), float("nan"), float("nan"), 0, confidence)
    sums, counts = per_video["sum"].to_numpy(float), per_video["count"].to_numpy(float)
    estimate = float(_ratio(sums, counts))
    means = sums / counts
    if len(per_video) < 2 or _constant(means):
        # One video cannot be resampled; equal video means give every resample the same mean.
        return Interval(estimate, estimate, estimate, len(per_video), confidence)
    low, high = _percentile_bootstrap((sums, counts), _ratio, seed, confidence)
    return Interval(estimate, min(low, estimate), max(high, estimate), len(per_video), confidence)


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: str, min_effect: float = 0.0,
            seed: int = SEED, confidence: float = CONFIDENCE) -> Comparison:
    """``b`` against ``a`` on the videos both measured (lower is better).

    ``b`` is "worse" when the whole interval of ``b - a`` lies above 0 and the difference
    exceeds ``min_effect``; "better" symmetrically; otherwise "within noise".
    """
    try:
        return compare_sums(video_sums(a, metric), video_sums(b, metric), min_effect, seed, confidence)
    except ValueError as err:
        raise ValueError(f"{metric}: {err}") from None


def compare_sums(left: pd.DataFrame, right: pd.DataFrame, min_effect: float = 0.0,
                 seed: int = SEED, confidence: float = CONFIDENCE) -> Comparison:
    """:func:`compare` on per-video sums and counts (:func:`video_sums`'s ``sum``/``count``
    columns, indexed by video): what a stored baseline keeps instead of every frame."""
    videos = left.index.intersection(right.index)
    if len(videos) == 0:
        raise ValueError("the two runs share no measured test video; they cannot be compared")
    sa, na = left.loc[videos, "sum"].to_numpy(float), left.loc[videos, "count"].to_numpy(float)
    sb, nb = right.loc[videos, "sum"].to_numpy(float), right.loc[videos, "count"].to_numpy(float)
    difference = float(_ratio(sb, nb) - _ratio(sa, na))
    per_video = sb / nb - sa / na
    if len(videos) < 2 or _constant(per_video):
        low = high = difference
    else:
        def diff(sb_, nb_, sa_, na_, axis=-1):
            return _ratio(sb_, nb_, axis) - _ratio(sa_, na_, axis)

        low, high = _percentile_bootstrap((sb, nb, sa, na), diff, seed, confidence)
        low, high = min(low, difference), max(high, difference)
    nonzero = per_video[per_video != 0]
    p = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else 1.0
    if low > 0 and difference > min_effect:
        verdict = "worse"
    elif high < 0 and -difference > min_effect:
        verdict = "better"
    else:
        verdict = "within noise"
    return Comparison(difference, low, high, len(videos), p, verdict)


def intervals(table: pd.DataFrame, metrics: list[str], seed: int = SEED) -> dict[str, Interval]:
    """:func:`interval` of each of ``metrics`` present in ``table``."""
    return {m: interval(table, m, seed) for m in metrics if m in table.columns}
