"""reports.strips: picture strips of reconstructed frames beside the ground truth, as data URIs."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from data_prep.video import write_stacked_png, write_video
from reports.strips import comparison_strips, pick_frames, png_data_uri, strip


def _decode(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):]))).convert("RGB"))


def _video(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("num_frames, count, expected", [
    (10, 6, [0, 2, 4, 5, 7, 9]),
    (7, 3, [0, 3, 6]),
    (4, 6, [0, 1, 2, 3]),  # fewer frames than asked: every frame, once
    (5, 1, [0]),
    (1, 6, [0]),
])
def test_pick_frames_spreads_from_first_to_last(num_frames, count, expected):
    picked = pick_frames(num_frames, count)
    assert picked == expected
    assert picked == sorted(set(picked)) and picked[0] == 0
    if count > 1:
        assert picked[-1] == num_frames - 1


def test_strip_puts_frames_side_by_side_enlarged_nearest():
    frames = _video(5, 3, 4)
    row = strip(frames, [0, 2, 4], scale=2)
    assert row.shape == (6, 24, 3) and row.dtype == np.uint8
    for k, i in enumerate([0, 2, 4]):
        block = row[:, 8 * k : 8 * (k + 1)]
        assert np.array_equal(block[::2, ::2], frames[i])  # every pixel repeated 2x2
        assert np.array_equal(block[1::2, 1::2], frames[i])
    assert np.array_equal(strip(frames, [1], scale=1), frames[1])


def test_png_data_uri_round_trips_losslessly():
    image = _video(1, 5, 7)[0]
    assert np.array_equal(_decode(png_data_uri(image)), image)


def test_comparison_strips_of_truth_and_runs(tmp_path):
    truth = _video(10, 16, 12, seed=1)
    write_video(tmp_path / "test" / "vid", truth)
    recon = _video(10, 16, 12, seed=2)
    runs = {"fomm": write_stacked_png(tmp_path / "fomm" / "vid.png", recon),
            "mraa": tmp_path / "mraa" / "vid.png"}  # not reconstructed (yet): left out
    truth_uri, strips, indices = comparison_strips(tmp_path / "test" / "vid", runs, count=4)
    assert indices == pick_frames(10, 4) == [0, 3, 6, 9]
    assert list(strips) == ["fomm"]
    scale = 128 // 16  # small frames are enlarged to about 128 px high
    assert np.array_equal(_decode(truth_uri), strip(truth, indices, scale))
    assert np.array_equal(_decode(strips["fomm"]), strip(recon, indices, scale))
    assert _decode(truth_uri).shape == (128, 4 * 12 * scale, 3)


def test_large_frames_are_not_shrunk(tmp_path):
    truth = _video(2, 160, 8)
    write_video(tmp_path / "vid", truth)
    truth_uri, strips, indices = comparison_strips(tmp_path / "vid", {}, count=6)
    assert strips == {} and indices == [0, 1]
    assert np.array_equal(_decode(truth_uri), strip(truth, [0, 1], 1))
