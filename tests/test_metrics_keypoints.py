"""AKD, MKR and AED arithmetic against hand-computed cases; aggregation of skipped frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics.aggregate import frame_weighted, measured_frames, per_video, pooled_mkr, skipped_frames
from metrics.identity import NO_EMBEDDING, aed
from metrics.keypoints import (
    NO_COMMON_JOINT,
    NO_FACE_GENERATED,
    NO_FACE_GT,
    NO_GT_JOINT,
    body_akd_mkr,
    face_akd,
    keypoint_metrics,
)

nan = np.nan


def test_body_akd_over_joints_present_in_both_and_mkr_denominators():
    gt = np.array(
        [
            [[10, 10], [20, 20], [30, 30], [nan, nan]],  # frame 0: 3 joints in the ground truth
            [[0, 0], [nan, nan], [nan, nan], [nan, nan]],  # frame 1: 1 joint, missing in generated
            [[nan, nan]] * 4,  # frame 2: nothing in the ground truth
        ],
        dtype=float,
    )
    gen = np.array(
        [
            [[11, 13], [nan, nan], [30, 26], [5, 5]],  # joint 1 missing; joint 3 extra (not counted)
            [[nan, nan], [1, 1], [nan, nan], [nan, nan]],
            [[1, 1]] * 4,
        ],
        dtype=float,
    )
    out = body_akd_mkr(gt, gen)
    # frame 0: joints 0 and 2 in both: |1|,|3|,|0|,|4| -> 8 / 4 coordinates = 2.0
    np.testing.assert_allclose(out["akd"], [2.0, nan, nan])
    assert list(out["akd_skip"]) == ["", NO_COMMON_JOINT, NO_COMMON_JOINT]
    assert list(out["mkr_missing"]) == [1, 1, 0]
    assert list(out["mkr_present"]) == [3, 1, 0]
    np.testing.assert_allclose(out["mkr"], [1 / 3, 1.0, nan])
    assert list(out["mkr_skip"]) == ["", "", NO_GT_JOINT]


def test_a_half_found_joint_is_missing():
    gt = np.array([[[4, 4], [8, 8]]], dtype=float)
    gen = np.array([[[5, nan], [8, 10]]], dtype=float)
    out = body_akd_mkr(gt, gen)
    assert out["mkr_missing"][0] == 1 and out["akd"][0] == pytest.approx(1.0)


def test_face_akd_skips_frames_without_a_face():
    gt = np.zeros((3, 68, 2))
    gen = np.full((3, 68, 2), 2.0)
    gen[0, :, 0] = 4.0  # x off by 4, y off by 2 -> mean 3
    gen[1] = nan  # no face in the generated frame
    gt[2] = nan  # no face in the ground truth
    out = face_akd(gt, gen)
    np.testing.assert_allclose(out["akd"], [3.0, nan, nan])
    assert list(out["akd_skip"]) == ["", NO_FACE_GENERATED, NO_FACE_GT]
    with pytest.raises(ValueError, match="unknown keypoint mode"):
        keypoint_metrics(gt, gen, "hands")


def test_keypoint_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shape"):
        body_akd_mkr(np.zeros((2, 15, 2)), np.zeros((2, 14, 2)))


def test_aed_is_squared_l2_without_root():
    gt = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    gen = np.array([[3.0, 4.0], [1.0, 1.0], [nan, 0.0]])
    out = aed(gt, gen)
    np.testing.assert_allclose(out["aed"], [25.0, 0.0, nan])  # 3² + 4², not 5
    assert list(out["aed_skip"]) == ["", "", NO_EMBEDDING]


def test_frame_weighted_vs_per_video_with_skipped_frames():
    table = pd.DataFrame(
        {
            "video": ["a", "a", "a", "b", "b"],
            "frame": [0, 1, 2, 0, 1],
            "l1": [0.1, 0.1, 0.1, 0.5, 0.5],
            "akd": [1.0, 2.0, nan, 6.0, nan],
            "akd_skip": ["", "", NO_COMMON_JOINT, "", NO_COMMON_JOINT],
            "mkr_missing": [0, 1, 2, 1, 0],
            "mkr_present": [2, 2, 2, 4, 0],
            "mkr": [0.0, 0.5, 1.0, 0.25, nan],
            "mkr_skip": ["", "", "", "", NO_GT_JOINT],
        }
    )
    fw, pv = frame_weighted(table), per_video(table)
    assert fw["l1"] == pytest.approx(0.26)
    assert pv["l1"] == pytest.approx(0.3)
    assert fw["akd"] == pytest.approx(3.0)  # (1 + 2 + 6) / 3 measured frames
    assert pv["akd"] == pytest.approx((1.5 + 6.0) / 2)
    assert fw["mkr"] == pytest.approx(1.75 / 4)  # mean of per-frame ratios
    assert pooled_mkr(table) == pytest.approx(4 / 10)
    assert measured_frames(table) == {"l1": 5, "akd": 3, "mkr": 4}
    assert skipped_frames(table) == {"akd": {NO_COMMON_JOINT: 2}, "mkr": {NO_GT_JOINT: 1}}
    # Read back from CSV (empty reasons become NaN) the counts are the same.
    again = pd.read_csv(pd.io.common.StringIO(table.to_csv(index=False)))
    assert skipped_frames(again) == skipped_frames(table)
