"""scikit-image 0.14's resize, reproduced (data_prep/legacy_resize.py): the papers' frames.

The pinned values in tests/data/skimage014_resize.json come from 0.14.2's own Python code
(resize, warp, AffineTransform, img_as_ubyte) run by an uncommitted script; the other tests
check the properties that make 0.14 differ from today's scikit-image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from data_prep.legacy_resize import (
    float_to_ubyte,
    resize_matrix,
    skimage014_resize,
    skimage014_resize_ubyte,
)
from data_prep.preprocess import check_resize, resize_frame

PINNED = json.loads((Path(__file__).parent / "data" / "skimage014_resize.json").read_text())


def _pinned_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(2023)
    return [rng.integers(0, 256, tuple(case["shape"]), dtype=np.uint8) for case in PINNED["cases"]]


@pytest.mark.parametrize("index", range(len(PINNED["cases"])))
def test_equals_scikit_image_0_14_2_on_pinned_images(index):
    case = PINNED["cases"][index]
    image = _pinned_inputs()[index]
    want = np.asarray(case["result"])
    if "img_as_ubyte" in case["call"]:
        got = skimage014_resize_ubyte(image, tuple(case["output_shape"]))
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    else:
        got = skimage014_resize(image, tuple(case["output_shape"]))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_borders_are_padded_with_black_and_the_interior_is_untouched():
    flat = np.full((60, 60, 3), 200, np.uint8)
    out = skimage014_resize_ubyte(flat, (20, 20))
    assert (out[3:-3, 3:-3] == 200).all()
    assert out[0, 10, 0] < 195 and out[10, 0, 0] < 195  # the zero padding blurred in
    assert (resize_frame(flat, (20, 20), "modern") == 200).all()  # today's reflect padding
    # Upscaled, the first sample overhangs the image by 1/6 px and meets the padding, but the
    # result is clipped to the input's range, which a flat image makes a single value.
    up = skimage014_resize(flat, (90, 90))
    np.testing.assert_allclose(up, 200 / 255, atol=1e-12)
    ramp = np.tile(np.arange(60, dtype=np.uint8)[None, :, None] + 100, (60, 1, 3))
    assert skimage014_resize(ramp, (90, 90))[45, 0, 0] == 100 / 255  # clipped up to the minimum


def test_the_anti_aliasing_filter_truncates_after_each_axis():
    """0.14 blurred the uint8 array: each pass is floored, so the result is darker than a float
    blur by less than a level per pass on average (2 passes: below 2)."""
    image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    truncated = ndi.gaussian_filter(image, (1.5, 1.5), mode="constant")
    exact = ndi.gaussian_filter(image.astype(float), (1.5, 1.5), mode="constant")
    gap = (exact - truncated)[8:-8, 8:-8]
    assert 0.3 < gap.mean() < 1.5 and gap.min() > -1e-9 and gap.max() < 2


def test_the_estimated_map_is_the_pixel_centre_rule_to_rounding():
    for in_shape, out_shape in [((553, 553), (256, 256)), ((720, 405), (384, 384)), ((9, 7), (20, 15))]:
        m = resize_matrix(in_shape, out_shape)
        exact = np.array([[in_shape[1] / out_shape[1], 0, 0.5 * in_shape[1] / out_shape[1] - 0.5],
                          [0, in_shape[0] / out_shape[0], 0.5 * in_shape[0] / out_shape[0] - 0.5],
                          [0, 0, 1]])
        np.testing.assert_allclose(m, exact, atol=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        skimage014_resize(np.zeros((4, 4), np.float32), (2, 2))
    with pytest.raises(ValueError, match="cannot resize"):
        skimage014_resize(np.zeros((4, 4), np.uint8), (0, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        float_to_ubyte(np.full((2, 2), 1.5))


def test_paper_resize_differs_from_today_s_as_the_issue_measured():
    """A 553-px TaiChi crop to 256: 0.14 is darker on average and much darker on the border."""
    rng = np.random.default_rng(1)
    smooth = ndi.zoom(rng.uniform(0, 255, (72, 72, 3)), (553 / 72, 553 / 72, 1), order=3)
    crop = np.clip(smooth, 0, 255).astype(np.uint8)
    paper = resize_frame(crop, (256, 256), "paper").astype(int)
    modern = resize_frame(crop, (256, 256), "modern").astype(int)
    diff = paper - modern
    assert -2 < diff.mean() < -0.2
    assert diff[:2].mean() < -2 and diff[:2].min() <= -10
    assert np.abs(diff[4:-4, 4:-4]).max() <= 3


def test_the_old_resize_name_is_refused_with_the_new_ones():
    with pytest.raises(ValueError, match="renamed: use 'modern'.*'paper'"):
        check_resize("reference")
    with pytest.raises(ValueError, match="not one of"):
        check_resize("nearest")
    assert check_resize("paper") == "paper"
