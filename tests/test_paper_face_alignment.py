"""face_alignment_paper: face-alignment run as the papers' pose-evaluation ran it (commit 3750f83).

The decoding arithmetic is checked on small hand-made inputs against numbers worked out by hand
from 3750f83's formulas (quoted in each test); the networks' plumbing with stand-in networks;
one end-to-end run of the real architectures at random weights is marked slow. The comparison
with the 3750f83 source itself (which is not a dependency) is in docs/evaluators.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metrics.backends import face_alignment_landmarks as fa
from metrics.backends.base import (
    BackendInfo,
    backend_weights,
    build_keypoint_backend,
    list_backends,
)

INFO = BackendInfo("face_alignment_paper", "face-alignment", "test", "s")


def _need_package():
    pytest.importorskip("face_alignment", reason="face-alignment not installed (workflow/scripts/install_evaluators.sh)")


# ----------------------------------------------------------------- heatmap peak -> 64x64 coords


def _heatmaps(peaks, count=68):
    """count x 64 x 64 zeros with value 1 at (row, col) = peaks[j] and given neighbours."""
    hm = np.zeros((count, 64, 64), np.float32)
    for j, (row, col, neighbours) in enumerate(peaks):
        hm[j, row, col] = 1.0
        for (dr, dc), v in neighbours.items():
            hm[j, row + dr, col + dc] = v
    return hm


def test_heatmap_peak_is_one_based_moved_a_quarter_towards_the_larger_neighbour_minus_half():
    # 3750f83: (col + 1, row + 1) of the maximum, + 0.25 * sign(right - left, below - above)
    # when 0 < col < 63 and 0 < row < 63, then - 0.5.
    hm = _heatmaps([
        (10, 20, {(0, 1): 0.6, (0, -1): 0.2, (1, 0): 0.1, (-1, 0): 0.5}),  # right larger, above larger
        (30, 40, {(0, 1): 0.3, (0, -1): 0.3, (1, 0): 0.4, (-1, 0): 0.4}),  # equal: sign 0, no move
        (0, 5, {(0, 1): 0.9, (1, 0): 0.9}),  # top row: no move at all
        (63, 63, {(0, -1): 0.9, (-1, 0): 0.9}),  # bottom-right corner: no move
        (5, 0, {(0, 1): 0.9}),  # left column: no move
    ], count=5)
    peaks = fa.heatmap_peaks(hm)
    assert peaks.dtype == np.float32
    expected = [
        (20 + 1 + 0.25 - 0.5, 10 + 1 - 0.25 - 0.5),  # (20.75, 10.25)
        (40 + 1 - 0.5, 30 + 1 - 0.5),  # (40.5, 30.5)
        (5 + 1 - 0.5, 0 + 1 - 0.5),  # (5.5, 0.5)
        (63 + 1 - 0.5, 63 + 1 - 0.5),  # (63.5, 63.5)
        (0 + 1 - 0.5, 5 + 1 - 0.5),  # (0.5, 5.5)
    ]
    np.testing.assert_array_equal(peaks, np.array(expected, np.float32))


def test_heatmap_peak_takes_the_first_maximum_in_row_major_order():
    hm = np.zeros((2, 64, 64), np.float32)
    hm[0, 7, 50] = hm[0, 7, 9] = hm[0, 40, 2] = 2.0  # ties: (7, 9) comes first
    hm[1, 12, 12] = 1.0
    hm[1, 12, 13] = 1.0  # its right neighbour ties it: the peak is (12, 12), moved right
    peaks = fa.heatmap_peaks(hm)
    np.testing.assert_array_equal(peaks[0], [9 + 0.5, 7 + 0.5])
    np.testing.assert_array_equal(peaks[1], [12 + 0.5 + 0.25, 12 + 0.5])


def test_heatmap_peaks_refuse_other_sizes():
    with pytest.raises(ValueError, match="64"):
        fa.heatmap_peaks(np.zeros((68, 32, 32), np.float32))


# ------------------------------------------------------------------------- crop centre, scale


def test_center_and_scale_of_a_box_as_3750f83():
    # centre = (x2 - w / 2, y2 - h / 2 - 0.12 h), scale = (w + h) / 195
    center, scale = fa.paper_center_scale(np.array([10.0, 20.0, 110.0, 140.0, 0.9]))
    assert center.dtype == torch.float32
    assert center[0].item() == 60.0
    # 80 - 0.12 * 120 = 65.6, the subtraction done in float32
    assert center[1].item() == np.float32(np.float32(80.0) - np.float32(14.4)) == pytest.approx(65.6, abs=1e-5)
    assert isinstance(scale, float) and scale == 220 / 195  # float64, as NumPy 1.x promoted it


def test_center_uses_the_float32_box_and_float64_intermediates():
    # A box that is not float32-exact is rounded to float32 first (3750f83's boxes were float32).
    box = np.array([0.1, 0.2, 100.3, 50.7])
    x1, y1, x2, y2 = (np.float32(v) for v in box)
    center, scale = fa.paper_center_scale(box)
    assert center[0].item() == np.float32(float(x2) - float(x2 - x1) / 2)
    assert scale == float(np.float32(np.float32(x2 - x1) + y2) - y1) / 195


# ------------------------------------------------------------------ back to image coordinates


def test_landmarks_from_heatmaps_map_back_and_truncate_towards_zero():
    _need_package()
    # Inverse crop transform: x_img = x_hm * h / 64 + cx - h / 2 with h = 200 * scale; then int().
    # scale 1.6 -> h = 320, h / 64 = 5; centre (100, 90).
    hm = _heatmaps([
        (10, 20, {(0, 1): 0.6, (0, -1): 0.2, (1, 0): 0.1, (-1, 0): 0.5}),  # peak (20.75, 10.25)
        (40, 12, {}),  # peak (12.5, 40.5)
    ], count=2)
    center = torch.tensor([100.0, 90.0])
    points = fa.paper_landmarks_from_heatmaps(hm, center, 1.6)
    # (20.75 * 5 + 100 - 160, 10.25 * 5 + 90 - 160) = (43.75, -18.75) -> (43, -18): towards zero
    # (12.5 * 5 - 60, 40.5 * 5 - 70) = (2.5, 132.5) -> (2, 132)
    assert points.dtype == np.float64
    np.testing.assert_array_equal(points, [[43.0, -18.0], [2.0, 132.0]])


def test_a_landmark_whose_exact_position_is_an_integer_stays_on_it_as_in_3750f83():
    """Box (21, -7, 102, 80): w = 81, h = 87, centre (61.5, 36.5 - 10.44), scale 168 / 195.
    Peak x 38.5 (border row 63, no move): x = 38.5 * (200 * 168 / 195) / 64 + 61.5 - 100 * 168 / 195
    = 79 exactly. 3750f83's float32 torch inverse gives 79; face-alignment 1.5.0's float64 pinv
    (transform_np) lands just below and truncates to 78 (measured; see the slow test below).
    y = 63.5 * 2.6923... + 26.06 - 86.1538... = 110.87 -> 110."""
    _need_package()
    center, scale = fa.paper_center_scale(np.array([21.0, -7.0, 102.0, 80.0]))
    assert center[1].item() == pytest.approx(26.06, abs=1e-5)
    hm = _heatmaps([(63, 38, {})], count=1)
    assert fa.heatmap_peaks(hm)[0].tolist() == [38.5, 63.5]
    np.testing.assert_array_equal(fa.paper_landmarks_from_heatmaps(hm, center, scale), [[79.0, 110.0]])


# ---------------------------------------------------------------------------- S3FD decoding


def _sfd_outputs(hits, sizes=(8, 4, 2, 1, 1, 1)):
    """Six (class, regression) pairs; ``hits``: {(level, row, col): (probability, dx, dy, dw, dh)};
    every other anchor has probability ~0."""
    outs = []
    for level, size in enumerate(sizes):
        cls = torch.zeros(1, 2, size, size)
        cls[0, 1] = -30.0
        reg = torch.zeros(1, 4, size, size)
        for (lv, row, col), (p, *loc) in hits.items():
            if lv == level:
                cls[0, 1, row, col] = math.log(p / (1 - p))
                reg[0, :, row, col] = torch.tensor(loc)
        outs += [cls, reg]
    return outs


def test_sfd_boxes_decode_anchors_in_float32_level_by_level_row_major():
    outs = _sfd_outputs({
        (1, 3, 0): (0.6, 0.0, 0.0, 0.0, 0.0),
        (0, 2, 3): (0.9, 1.0, -1.0, 0.0, math.log(2) / 0.2),
        (0, 1, 5): (0.2, 0.0, 0.0, 0.0, 0.0),
        (0, 6, 6): (0.04, 0.0, 0.0, 0.0, 0.0),  # below the 0.05 candidate score: not a row
    })
    boxes = fa.sfd_boxes_float32(outs)
    assert boxes.dtype == np.float32 and boxes.shape == (3, 5)
    # level 0 (stride 4, anchor 16): anchor centre (col * 4 + 2, row * 4 + 2).
    # (row 1, col 5): centre (22, 6), 16 x 16 -> (14, -2, 30, 14).
    # (row 2, col 3): centre (14, 10) + 0.1 * 16 * (1, -1) = (15.6, 8.4); size 16 x 16 * 2 ->
    #   (7.6, -7.6, 23.6, 24.4).
    # level 1 (stride 8, anchor 32), (row 3, col 0): centre (4, 28) -> (-12, 12, 20, 44).
    np.testing.assert_allclose(boxes[0], [14, -2, 30, 14, 0.2], atol=1e-5)
    np.testing.assert_allclose(boxes[1], [7.6, -7.6, 23.6, 24.4, 0.9], atol=1e-5)
    np.testing.assert_allclose(boxes[2], [-12, 12, 20, 44, 0.6], atol=1e-5)
    assert fa.sfd_boxes_float32(_sfd_outputs({})).shape == (0, 5)


def test_classic_argsort_keeps_short_tied_runs_in_order_so_nms_takes_the_last_tied_box_first():
    # Up to 16 values NumPy 1.15's quicksort is a plain insertion sort: stable.
    scores = np.array([0.5, 1.0, 1.0, 0.2, 1.0], np.float32)
    assert fa.classic_argsort(scores).tolist() == [3, 0, 1, 2, 4]
    # Three overlapping boxes tied at 1.0 and a separate one: NMS walks the reversed order, so
    # the last tied box (index 2) is kept and suppresses the other two.
    boxes = np.array([
        [10, 10, 50, 50, 1.0], [12, 10, 52, 50, 1.0], [11, 11, 51, 51, 1.0], [100, 100, 140, 140, 0.9],
    ], np.float32)
    assert fa.nms_float32(boxes, 0.3).tolist() == [2, 3]
    assert fa.nms_float32(np.zeros((0, 5), np.float32), 0.3).tolist() == []


def test_classic_argsort_is_numpy_argsort_without_simd_sorting():
    """NumPy >= 1.25 sorts with x86-simd-sort where the CPU has AVX-512 (NumPy 2: also AVX2),
    which orders ties differently from NumPy 1.15. With NumPy's dispatched CPU features switched
    off (NPY_DISABLE_CPU_FEATURES) its argsort is the classic quicksort again: ours must match it
    on tie-heavy arrays longer than the insertion-sort cut-off."""
    import json
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    arrays = [rng.choice(np.float32([0.2, 0.6, 1.0]), n) for n in (17, 40, 257, 1000)]
    arrays += [np.ones(300, np.float32), np.round(rng.random(500) * 9).astype(np.float32)]
    script = (
        "import json, sys, numpy as np\n"
        "print(json.dumps([np.argsort(np.array(a, np.float32)).tolist() for a in json.load(sys.stdin)]))"
    )
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    found = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=" ".join(found))
    run = subprocess.run([sys.executable, "-c", script], input=json.dumps([a.tolist() for a in arrays]),
                         capture_output=True, text=True, env=env, check=True, timeout=60)
    for a, theirs in zip(arrays, json.loads(run.stdout), strict=True):
        assert fa.classic_argsort(a).tolist() == theirs


class _FakeSFD:
    def __init__(self, outputs):
        self.outputs, self.inputs = outputs, []

    def __call__(self, x):
        self.inputs.append(x.clone())
        return [o.clone() for o in self.outputs]


class _FakeFAN:
    """Four 'stacks' of heatmaps; only the last is used."""

    def __init__(self, heatmaps):
        self.heatmaps, self.inputs = torch.from_numpy(heatmaps)[None], []

    def __call__(self, x):
        self.inputs.append(x.clone())
        return [torch.zeros_like(self.heatmaps)] * 3 + [self.heatmaps]


def test_face_boxes_feed_bgr_minus_mean_and_keep_nms_survivors_above_half_best_first():
    _need_package()
    sfd = _FakeSFD(_sfd_outputs({
        (0, 2, 2): (0.9, 0, 0, 0, 0),  # overlaps the next one (IoU 0.62 with +1 areas): suppressed
        (0, 2, 3): (0.95, 0, 0, 0, 0),
        (0, 6, 6): (0.7, 0, 0, 0, 0),
        (0, 6, 1): (0.3, 0, 0, 0, 0),  # a candidate, but below 0.5
    }))
    backend = fa.FaceAlignmentPaperLandmarks(None, sfd, INFO)
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 200, 100, 50
    faces = backend.face_boxes(frame)
    x = sfd.inputs[0]
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    assert x[0, :, 0, 0].tolist() == [50 - 104, 100 - 117, 200 - 123]
    np.testing.assert_allclose(faces[:, :4], [[6, 2, 22, 18], [18, 18, 34, 34]], atol=1e-5)
    np.testing.assert_allclose(faces[:, 4], [0.95, 0.7], atol=1e-6)
    backend.face_threshold = 0.96
    assert len(backend.face_boxes(frame)) == 0


def test_detect_runs_fan_on_the_first_face_only_and_leaves_faceless_frames_nan(monkeypatch):
    _need_package()
    # Every landmark's peak at (row 31, col 31) with equal neighbours -> (31.5, 31.5) in the map.
    hm = np.zeros((68, 64, 64), np.float32)
    hm[:, 31, 31] = 1.0
    fan = _FakeFAN(hm)
    backend = fa.FaceAlignmentPaperLandmarks(fan, None, INFO)
    first, second = np.array([0, 0, 156, 156, 0.9], np.float32), np.array([50, 50, 60, 60, 0.8], np.float32)
    calls = []

    def faces(frame):
        calls.append(frame.shape)
        return np.stack([first, second]) if len(calls) == 1 else np.zeros((0, 5), np.float32)

    monkeypatch.setattr(backend, "face_boxes", faces)
    frames = np.full((2, 200, 200, 3), 128, np.uint8)
    points = backend.detect(frames)
    assert calls == [(200, 200, 3)] * 2  # one frame at a time
    assert len(fan.inputs) == 1 and fan.inputs[0].shape == (1, 3, 256, 256)  # no flipped pass
    assert torch.allclose(fan.inputs[0][0, :, 128, 128], torch.tensor(128 / 255))  # crop / 255
    # Box (0, 0, 156, 156): centre (78, 78 - 18.72 = 59.28), scale 312 / 195 = 1.6, h / 64 = 5:
    # x = 31.5 * 5 + 78 - 160 = 75.5 -> 75, y = 31.5 * 5 + 59.28 - 160 = 56.78 -> 56.
    assert points.shape == (2, 68, 2) and points.dtype == np.float64
    np.testing.assert_array_equal(points[0], np.tile([75.0, 56.0], (68, 1)))
    assert np.isnan(points[1]).all()


def test_detect_checks_frames_like_the_modern_backend():
    backend = fa.FaceAlignmentPaperLandmarks(None, None, INFO)
    with pytest.raises(ValueError, match="uint8"):
        backend.detect(np.zeros((1, 8, 8, 3), np.float32))


# ------------------------------------------------------------------------------ registration


def test_paper_backend_is_registered_beside_the_modern_one_with_the_same_weights():
    assert {"face_alignment", "face_alignment_paper"} <= set(list_backends()["keypoint"])
    assert backend_weights("keypoint", "face_alignment_paper", {}) == ["fan_2d", "sfd"]
    assert backend_weights("keypoint", "face_alignment", {}) == ["fan_2d", "sfd"]


def test_paper_backend_without_a_face_gives_all_nan_rows_and_names_its_behaviour():
    _need_package()
    torch.set_num_threads(1)
    # A score threshold above 1 rejects every SFD box: the "no face" path, deterministically.
    backend = build_keypoint_backend("face_alignment_paper", pretrained=False, face_threshold=1.01)
    points = backend.detect(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    assert points.shape == (2, 68, 2) and np.isnan(points).all()
    assert backend.num_joints == 68
    info = backend.info
    assert info.name == "face_alignment_paper" and info.package == "face-alignment"
    assert info.version == "3750f83-behaviour-on-1.5.0" and " " not in info.cache_key()
    assert info.weights_sha256 == "random-init"


# ------------------------------------------------------------------ real architecture, slow


@pytest.mark.slow  # full-size S3FD and FAN forward passes on CPU, and numba compiling 1.5.0's decoder
def test_random_weights_end_to_end_matches_face_alignment_1_5_without_flip_on_the_same_box():
    """The paper variant on the real architectures at random weights: integer-valued pixels of the
    first SFD box, and face-alignment 1.5.0's own get_landmarks_from_image (flip_input=False) on
    that box gives the same crop and heatmaps, differing only where the float64 back-transform
    truncates the other way (at most 1 px, on few landmarks)."""
    _need_package()
    from face_alignment.utils import get_preds_fromhm, transform_np

    torch.set_num_threads(1)
    torch.manual_seed(0)
    paper = build_keypoint_backend("face_alignment_paper", pretrained=False)
    modern = build_keypoint_backend("face_alignment", pretrained=False, flip_input=False)
    modern.aligner.face_alignment_net.load_state_dict(paper.fan.state_dict())
    modern.aligner.face_detector.face_detector.load_state_dict(paper.sfd_net.state_dict())

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    points = paper.detect(frames)
    assert points.shape == (2, 68, 2)
    assert np.isfinite(points).all()  # a random S3FD finds 'faces' (scores ~0.6) in both frames
    for frame, row in zip(frames, points, strict=True):
        faces = paper.face_boxes(frame)
        assert np.array_equal(row, np.round(row))  # 3750f83 truncates to int
        theirs = modern.aligner.get_landmarks_from_image(frame, detected_faces=[faces[0].astype(np.float64)])
        diff = np.abs(np.asarray(theirs[0], np.float64) - row)
        assert diff.max() <= 1.0 and (diff > 0).any(-1).sum() <= 3

    # The 64x64 peaks are 1.5.0's get_preds_fromhm's, on random heatmaps (ties excluded).
    hm = rng.normal(size=(1, 68, 64, 64)).astype(np.float32)
    ours = fa.heatmap_peaks(hm[0])
    preds, _, _ = get_preds_fromhm(hm, np.array([50.0, 60.0]), 1.0)
    np.testing.assert_array_equal(ours, preds[0])

    # The integer-position case above: 1.5.0's float64 inverse truncates it to 78, ours keeps 79.
    center, scale = fa.paper_center_scale(np.array([21.0, -7.0, 102.0, 80.0]))
    c64 = np.array([61.5, 36.5 - 87 * 0.12])
    assert transform_np(np.array([38.5, 63.5]), c64, 168 / 195, 64, True)[0] == 78
    assert fa.paper_landmarks_from_heatmaps(_heatmaps([(63, 38, {})], count=1), center, scale)[0, 0] == 79
