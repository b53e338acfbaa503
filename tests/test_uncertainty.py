"""metrics.uncertainty: intervals over test videos and paired comparisons, on hand cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics.aggregate import frame_weighted
from metrics.uncertainty import compare, interval, intervals, video_sums


def _table(values: dict[str, list[float]], metric: str = "l1") -> pd.DataFrame:
    rows = [{"video": v, "frame": i, metric: x} for v, xs in values.items() for i, x in enumerate(xs)]
    return pd.DataFrame(rows)


def _noisy(seed: int, videos: int = 12, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _table({f"v{i}": list(0.05 + 0.01 * rng.standard_normal(int(rng.integers(5, 15))) + shift)
                   for i in range(videos)})


def test_a_constant_metric_has_a_zero_width_interval():
    result = interval(_table({"a": [0.1, 0.1], "b": [0.1, 0.1, 0.1]}), "l1")
    assert result.low == result.high == pytest.approx(0.1) and result.videos == 2


def test_the_estimate_is_the_frame_weighted_mean_and_lies_inside():
    table = _noisy(0)
    result = interval(table, "l1")
    assert result.estimate == pytest.approx(frame_weighted(table)["l1"], rel=1e-12)
    assert result.low < result.estimate < result.high
    assert result.high - result.low < 0.02  # 12 videos of ~10 frames with sd 0.01


def test_intervals_are_seeded_and_skip_unmeasured_frames():
    table = _noisy(1)
    table.loc[::4, "l1"] = np.nan
    assert interval(table, "l1") == interval(table, "l1")
    assert video_sums(table, "l1")["count"].sum() == table["l1"].notna().sum()
    assert set(intervals(table, ["l1", "akd"])) == {"l1"}


def test_two_identical_runs_compare_as_unchanged():
    table = _noisy(2)
    result = compare(table, table.copy(), "l1")
    assert result.verdict == "within noise" and result.difference == 0 and result.low == result.high == 0


def test_a_run_shifted_by_a_constant_is_worse_by_exactly_that_constant():
    base = _noisy(3)
    shifted = base.assign(l1=base["l1"] + 0.002)
    result = compare(base, shifted, "l1")
    assert result.verdict == "worse"
    assert result.difference == pytest.approx(0.002, abs=1e-12)
    assert result.low == pytest.approx(0.002, abs=1e-12) and result.high == pytest.approx(0.002, abs=1e-12)
    assert compare(shifted, base, "l1").verdict == "better"
    # Beyond noise but below the minimal effect size: not a regression.
    assert compare(base, shifted, "l1", min_effect=0.01).verdict == "within noise"


def test_independent_noise_is_within_noise_and_a_large_shift_is_not():
    a, b = _noisy(4), _noisy(4)
    b["l1"] = b["l1"] + np.random.default_rng(5).normal(0, 0.01, len(b))
    assert compare(a, b, "l1").verdict == "within noise"
    b["l1"] = b["l1"] + 0.05
    result = compare(a, b, "l1")
    assert result.verdict == "worse" and result.low > 0.03 and result.wilcoxon_p < 0.01


def test_runs_on_disjoint_videos_cannot_be_compared():
    with pytest.raises(ValueError, match="share no measured test video"):
        compare(_table({"a": [0.1]}), _table({"b": [0.1]}), "l1")


def test_metrics_json_carries_each_metrics_interval(tmp_path):
    import json

    from metrics.evaluate import Evaluation, write_metrics

    table = _noisy(6)
    write_metrics(Evaluation(table, {"protocol": "l1"}), tmp_path / "metrics.csv")
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["protocol"] == "l1" and set(record["intervals"]) == {"l1"}
    found = record["intervals"]["l1"]
    assert found == interval(table, "l1").as_dict()
    assert found["low"] < found["estimate"] < found["high"] and found["videos"] == 12


def test_a_swapped_comparison_is_the_reverse_comparison():
    a, b = _noisy(7), _noisy(7)
    b["l1"] = b["l1"] + np.random.default_rng(8).normal(0.004, 0.01, len(b))
    forward, backward = compare(a, b, "l1"), compare(b, a, "l1")
    mirrored = forward.swapped()
    assert mirrored.verdict == backward.verdict and mirrored.videos == backward.videos
    for field in ("difference", "low", "high", "wilcoxon_p"):
        assert getattr(mirrored, field) == pytest.approx(getattr(backward, field), rel=1e-9, abs=1e-15), field
