"""AKD and MKR per frame from two keypoint arrays (ground truth, generated).

Keypoints are ``(T, J, 2)`` pixel coordinates with NaN where a joint (or, for faces, the whole
face) was not found. Two protocols, as in the pose-evaluation code the papers used:

- ``body`` (TaiChiHD, TED, synthetic): a joint is *present* when both coordinates are finite.
  AKD = mean |gt − generated| over the coordinates of joints present in both frames; MKR = joints
  present in the ground truth but missing in the generated frame ÷ joints present in the ground
  truth. A frame with no joint present in both has no AKD; one with no joint in the ground truth
  has no MKR; both are counted as skipped with that reason.
- ``face`` (VoxCeleb): all landmarks come from one detected face. AKD = mean |gt − generated|
  over all coordinates; frames where the generated (or the ground-truth) image has no face are
  skipped and counted. MKR is not defined.

Each function returns per-frame columns: values (NaN where skipped), the MKR numerator and
denominator as integer counts (so any aggregation can be recomputed exactly) and a skip reason
(empty string = measured).
"""

from __future__ import annotations

import numpy as np

MODES = ("body", "face")
NO_COMMON_JOINT = "no joint found in both frames"
NO_GT_JOINT = "no joint found in the ground truth"
NO_FACE_GENERATED = "no face in the generated frame"
NO_FACE_GT = "no face in the ground truth"


def _check(gt: np.ndarray, generated: np.ndarray) -> None:
    if gt.shape != generated.shape or gt.ndim != 3 or gt.shape[-1] != 2:
        raise ValueError(f"keypoints must be (T, J, 2) of equal shape; got {gt.shape} and {generated.shape}")


def body_akd_mkr(gt: np.ndarray, generated: np.ndarray) -> dict[str, np.ndarray]:
    """Columns ``akd, akd_skip, mkr_missing, mkr_present, mkr, mkr_skip`` for body keypoints."""
    _check(gt, generated)
    present_gt = np.isfinite(gt).all(-1)
    present_gen = np.isfinite(generated).all(-1)
    both = present_gt & present_gen
    diff = np.where(both[..., None], np.abs(gt - generated), 0.0)
    n_both = both.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        akd = np.where(n_both > 0, diff.sum((1, 2)) / (2 * n_both), np.nan)
        missing = (present_gt & ~present_gen).sum(1)
        present = present_gt.sum(1)
        mkr = np.where(present > 0, missing / present, np.nan)
    return {
        "akd": akd,
        "akd_skip": np.where(n_both > 0, "", NO_COMMON_JOINT).astype(object),
        "mkr_missing": missing.astype(np.int64),
        "mkr_present": present.astype(np.int64),
        "mkr": mkr,
        "mkr_skip": np.where(present > 0, "", NO_GT_JOINT).astype(object),
    }


def face_akd(gt: np.ndarray, generated: np.ndarray) -> dict[str, np.ndarray]:
    """Columns ``akd, akd_skip`` for face landmarks (a frame has a whole face or none)."""
    _check(gt, generated)
    face_gt = np.isfinite(gt).all((1, 2))
    face_gen = np.isfinite(generated).all((1, 2))
    with np.errstate(invalid="ignore"):
        akd = np.abs(gt - generated).mean((1, 2))
    akd = np.where(face_gt & face_gen, akd, np.nan)
    skip = np.where(~face_gt, NO_FACE_GT, np.where(~face_gen, NO_FACE_GENERATED, ""))
    return {"akd": akd, "akd_skip": skip.astype(object)}


def keypoint_metrics(gt: np.ndarray, generated: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    if mode == "body":
        return body_akd_mkr(gt, generated)
    if mode == "face":
        return face_akd(gt, generated)
    raise ValueError(f"unknown keypoint mode {mode!r}; known: {', '.join(MODES)}")
