"""L1 per frame, evaluation of a reconstruction folder, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_prep.video import read_video, write_stacked_png
from metrics.aggregate import frame_weighted, per_video
from metrics.evaluate import evaluate_reconstructions
from metrics.l1 import l1_per_frame


def test_l1_matches_hand_computation():
    a = np.zeros((2, 1, 2, 3), np.uint8)
    b = np.zeros((2, 1, 2, 3), np.uint8)
    b[0, 0, 0, :] = 255  # frame 0: 3 of 6 values differ by 1.0
    b[1, 0, 1, 0] = 51  # frame 1: 1 of 6 values differs by 0.2
    np.testing.assert_allclose(l1_per_frame(a, b), [0.5, 0.2 / 6])


def test_l1_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        l1_per_frame(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 4, 4, 3), np.uint8))


def test_aggregation_frame_weighted_vs_per_video():
    table = pd.DataFrame({"video": ["a", "a", "a", "b"], "frame": [0, 1, 2, 0], "l1": [0.1, 0.1, 0.1, 0.5]})
    assert frame_weighted(table)["l1"] == pytest.approx(0.2)
    assert per_video(table)["l1"] == pytest.approx(0.3)


def test_evaluate_perfect_and_shifted_reconstructions(tiny_dataset, tmp_path):
    from data_prep.manifest import available_videos

    videos = available_videos(tiny_dataset, "test")
    for i, video in enumerate(videos):
        frames = read_video(tiny_dataset / "test" / video)
        if i == 1:
            frames = (frames.astype(np.int32) // 2).astype(np.uint8)
        write_stacked_png(tmp_path / f"{video}.png", frames)
    table = evaluate_reconstructions(tmp_path, tiny_dataset, "synthetic", progress=False)
    assert list(table.columns) == ["video", "frame", "l1"]
    assert (table[table.video == videos[0]]["l1"] == 0).all()
    truth = read_video(tiny_dataset / "test" / videos[1]).astype(np.float64)
    expected = np.abs(truth - (truth.astype(np.int32) // 2)).reshape(len(truth), -1).mean(1) / 255
    np.testing.assert_allclose(table[table.video == videos[1]]["l1"], expected)
    assert len(table) == sum(len(read_video(tiny_dataset / "test" / v)) for v in videos)


def test_missing_reconstruction_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no reconstruction"):
        evaluate_reconstructions(tmp_path, tiny_dataset, "synthetic", progress=False)


def test_unknown_protocol_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(KeyError, match="unknown evaluation protocol"):
        evaluate_reconstructions(tmp_path, tiny_dataset, "nope", progress=False)
