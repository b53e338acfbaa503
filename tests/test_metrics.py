"""L1 per frame, evaluation of a reconstruction folder (L1, AKD, MKR, AED), protocols, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_prep.io import file_sha256
from data_prep.manifest import available_videos
from data_prep.video import read_stacked_png, read_video, write_stacked_png
from metrics.aggregate import frame_weighted, per_video
from metrics.backends import BackendInfo, build_keypoint_backend
from metrics.baseline import no_motion_reconstruction
from metrics.evaluate import evaluate_reconstructions, measure, write_metrics
from metrics.l1 import l1_per_frame
from metrics.protocols import get_protocol, load_protocols

#: A few optimisation steps: enough to exercise the plumbing, not to be accurate.
TINY_EVALUATORS = {"keypoint": {"steps": 4, "batch_size": 4}, "identity": {"steps": 4, "batch_size": 4}}


@pytest.fixture(scope="module")
def tiny_evaluators(tiny_dataset, tmp_path_factory):
    from metrics.train_evaluators import override, train_evaluators

    out = tmp_path_factory.mktemp("evaluators")
    settings = override(get_protocol("synthetic").trained_evaluators, TINY_EVALUATORS)
    train_evaluators(tiny_dataset, out, settings, progress=False)
    return out


def _copy_truth(dataset, out, transform=lambda i, f: f):
    for i, video in enumerate(available_videos(dataset, "test")):
        write_stacked_png(out / f"{video}.png", transform(i, read_video(dataset / "test" / video)))


def test_l1_matches_hand_computation():
    a = np.zeros((2, 1, 2, 3), np.uint8)
    b = np.zeros((2, 1, 2, 3), np.uint8)
    b[0, 0, 0, :] = 255  # frame 0: 3 of 6 values differ by 1.0
    b[1, 0, 1, 0] = 51  # frame 1: 1 of 6 values differs by 0.2
    np.testing.assert_allclose(l1_per_frame(a, b), [0.5, 0.2 / 6])
    np.testing.assert_allclose(l1_per_frame(b, a), [0.5, 0.2 / 6])  # |a - b| both ways in uint8


def test_l1_equals_the_float_definition():
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8) for _ in range(2))
    a_before, b_before = a.copy(), b.copy()
    expected = np.abs(a / 255.0 - b / 255.0).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(l1_per_frame(a, b), expected, rtol=1e-12)
    np.testing.assert_array_equal(a, a_before)  # the difference is computed in a new array
    np.testing.assert_array_equal(b, b_before)
    with pytest.raises(ValueError, match="uint8"):
        l1_per_frame(a.astype(np.float32), b.astype(np.float32))


def test_l1_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        l1_per_frame(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 4, 4, 3), np.uint8))


def test_aggregation_frame_weighted_vs_per_video():
    table = pd.DataFrame({"video": ["a", "a", "a", "b"], "frame": [0, 1, 2, 0], "l1": [0.1, 0.1, 0.1, 0.5]})
    assert frame_weighted(table)["l1"] == pytest.approx(0.2)
    assert per_video(table)["l1"] == pytest.approx(0.3)


def test_evaluate_perfect_and_shifted_reconstructions_l1(tiny_dataset, tmp_path):
    videos = available_videos(tiny_dataset, "test")
    _copy_truth(tiny_dataset, tmp_path, lambda i, f: (f.astype(np.int32) // 2).astype(np.uint8) if i == 1 else f)
    table = evaluate_reconstructions(tmp_path, tiny_dataset, "l1", progress=False).table
    assert list(table.columns) == ["video", "frame", "l1"]
    assert (table[table.video == videos[0]]["l1"] == 0).all()
    truth = read_video(tiny_dataset / "test" / videos[1]).astype(np.float64)
    expected = np.abs(truth - (truth.astype(np.int32) // 2)).reshape(len(truth), -1).mean(1) / 255
    np.testing.assert_allclose(table[table.video == videos[1]]["l1"], expected)
    assert len(table) == sum(len(read_video(tiny_dataset / "test" / v)) for v in videos)


def test_synthetic_protocol_measures_all_four_and_records_evaluators(tiny_dataset, tiny_evaluators, tmp_path):
    recon, cache = tmp_path / "recon", tmp_path / "gt_cache"
    _copy_truth(tiny_dataset, recon)
    kwargs = {"evaluators_dir": tiny_evaluators, "gt_cache_dir": cache, "batch_size": 3}
    evaluation = evaluate_reconstructions(recon, tiny_dataset, "synthetic", progress=False, **kwargs)
    table = evaluation.table
    assert list(table.columns) == [
        "video", "frame", "l1", "akd", "akd_skip", "mkr_missing", "mkr_present", "mkr", "mkr_skip", "aed", "aed_skip",
    ]
    # A perfect reconstruction: the same frames give the same detections and embeddings.
    assert (table["l1"] == 0).all() and (table["mkr_missing"] == 0).all()
    np.testing.assert_allclose(table["akd"].dropna(), 0, atol=1e-4)
    np.testing.assert_allclose(table["aed"], 0, atol=1e-6)
    record = evaluation.record
    keypoints = record["evaluators"]["keypoints"]
    assert keypoints["weights_sha256"] == file_sha256(tiny_evaluators / "keypoints.pt")
    assert keypoints["mode"] == "body" and "keypoint_error_px" in keypoints["validation"]
    assert "identity_top1" in record["evaluators"]["identity"]["validation"]
    videos = len(available_videos(tiny_dataset, "test"))
    assert record["gt_cache"]["keypoints"]["misses"] == videos
    # A second run (another method) reuses the ground truth: no evaluator pass on it.
    again = evaluate_reconstructions(recon, tiny_dataset, "synthetic", progress=False, **kwargs)
    assert again.record["gt_cache"]["keypoints"] == {**record["gt_cache"]["keypoints"], "hits": videos, "misses": 0}
    # Same metrics within float noise: on a cache miss the generated frames share batches with
    # the ground truth, on a hit they go alone (conv kernels may sum in another order).
    pd.testing.assert_frame_equal(again.table, table, check_exact=False, atol=1e-4, rtol=0)
    write_metrics(evaluation, tmp_path / "run" / "metrics.csv")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"] == "synthetic"
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == len(table)


def test_no_motion_baseline_is_frame_zero_everywhere(tiny_dataset, tiny_evaluators, tmp_path):
    index = no_motion_reconstruction(tiny_dataset, tmp_path / "no-motion", progress=False)
    listed = pd.read_csv(index)
    assert list(listed["video"]) == available_videos(tiny_dataset, "test")
    video = listed["video"].iloc[0]
    truth = read_video(tiny_dataset / "test" / video)
    still = read_stacked_png(tmp_path / "no-motion" / f"{video}.png", truth.shape[2])
    assert still.shape == truth.shape and (still == truth[0]).all()
    table = evaluate_reconstructions(
        tmp_path / "no-motion", tiny_dataset, "synthetic", progress=False,
        evaluators_dir=tiny_evaluators, gt_cache_dir=tmp_path / "cache",
    ).table
    first = table[table.frame == 0]
    assert (first["l1"] == 0).all() and (table[table.frame > 0]["l1"] > 0).all()


def test_prefetching_reader_gives_the_same_table_and_errors(tiny_dataset, tmp_path):
    """On a GPU the next video is decoded in a thread (``prefetch``); on a CPU in turn. Both
    must measure the same frames, in order, and a bad video must still stop the pass."""
    _copy_truth(tiny_dataset, tmp_path, lambda i, f: f[::-1].copy())  # frames reversed
    protocol = get_protocol("l1")
    tables = [measure(tmp_path, tiny_dataset, protocol, progress=False, prefetch=p).table for p in (False, True)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert (tables[0]["l1"] > 0).any()
    (tmp_path / f"{available_videos(tiny_dataset, 'test')[-1]}.png").unlink()
    with pytest.raises(FileNotFoundError, match="no reconstruction"):
        measure(tmp_path, tiny_dataset, protocol, progress=False, prefetch=True)


def test_missing_reconstruction_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no reconstruction"):
        evaluate_reconstructions(tmp_path, tiny_dataset, "l1", progress=False)


def test_width_not_a_multiple_of_the_frame_width_is_an_error(tiny_dataset, tmp_path):
    _copy_truth(tiny_dataset, tmp_path)
    video = available_videos(tiny_dataset, "test")[0]
    image = np.asarray(Image.open(tmp_path / f"{video}.png"))
    Image.fromarray(image[:, :-3]).save(tmp_path / f"{video}.png")
    with pytest.raises(ValueError, match="not a multiple of frame width"):
        evaluate_reconstructions(tmp_path, tiny_dataset, "l1", progress=False)


def test_frame_count_mismatch_is_an_error(tiny_dataset, tmp_path):
    _copy_truth(tiny_dataset, tmp_path, lambda i, f: f[:-1] if i == 0 else f)
    with pytest.raises(ValueError, match="frames of"):
        evaluate_reconstructions(tmp_path, tiny_dataset, "l1", progress=False)


class _Blind:
    """A keypoint backend that finds nothing (wrong weights for the data, say)."""

    info = BackendInfo("blind", "test", "0", "0" * 64)
    num_joints = 15

    def detect(self, frames):
        return np.full((len(frames), 15, 2), np.nan)


def test_backend_that_finds_nothing_in_the_ground_truth_is_an_error(tiny_dataset, tmp_path):
    _copy_truth(tiny_dataset, tmp_path)
    protocol = get_protocol("synthetic")
    with pytest.raises(ValueError, match="found nothing in any ground-truth"):
        measure(tmp_path, tiny_dataset, protocol, keypoint_backend=_Blind(), gt_cache_dir=tmp_path / "c", progress=False)


def test_nothing_found_in_generated_frames_is_counted_not_averaged(tiny_dataset, tiny_evaluators, tmp_path):
    # Generated frames in which the evaluator finds no joint: MKR = 1, AKD skipped and counted.
    # The generated frames are the ground truth's negatives; the evaluator is blind to those.
    _copy_truth(tiny_dataset, tmp_path, lambda i, f: 255 - f)
    real = build_keypoint_backend("synthetic", weights_dir=tiny_evaluators)

    class GeneratedBlind:
        info, num_joints = real.info, 15

        def detect(self, frames):
            out = real.detect(frames)
            truth = np.array([_is_truth(f) for f in frames])
            out[~truth] = np.nan
            return out

    frames_of_truth = {f.tobytes() for v in available_videos(tiny_dataset, "test") for f in read_video(tiny_dataset / "test" / v)}

    def _is_truth(frame):
        return frame.tobytes() in frames_of_truth

    protocol = get_protocol("synthetic")
    table = measure(tmp_path, tiny_dataset, protocol, GeneratedBlind(), None, tmp_path / "c", 1000, False).table
    assert table["akd"].isna().all() and (table["akd_skip"] != "").all()
    np.testing.assert_allclose(table.loc[table.mkr_present > 0, "mkr"], 1.0)


def test_unknown_protocol_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(KeyError, match="unknown evaluation protocol"):
        evaluate_reconstructions(tmp_path, tiny_dataset, "nope", progress=False)


def test_protocols_file_is_validated(tmp_path):
    protocols = load_protocols()
    assert protocols["taichi"].keypoints == {"backend": "openpifpaf", "mode": "body"}
    assert protocols["vox"].identity == {"backend": "facenet"} and "mkr" not in protocols["vox"].metrics
    assert protocols["mgif"].metrics == ("l1",)
    bad = tmp_path / "p.yaml"
    bad.write_text("x: {metrics: [l1, psnr]}\n")
    with pytest.raises(ValueError, match="invalid protocol at x/metrics"):
        load_protocols(bad)
    bad.write_text("x: {metrics: [l1, mkr], keypoints: {backend: face_alignment, mode: face}}\n")
    with pytest.raises(ValueError, match="MKR is not defined"):
        load_protocols(bad)
    bad.write_text("x: {metrics: [l1, aed]}\n")
    with pytest.raises(ValueError, match="names no identity backend"):
        load_protocols(bad)


def test_protocol_weights_name_the_files_each_backend_loads():
    from data_prep.weights import REGISTRY
    from metrics.protocols import protocol_weights

    assert protocol_weights(get_protocol("synthetic")) == []  # trained in the DAG
    assert protocol_weights(get_protocol("mgif")) == []
    assert protocol_weights(get_protocol("vox")) == ["fan_2d", "sfd", "facenet_vggface2"]
    assert protocol_weights(get_protocol("taichi")) == ["openpifpaf_shufflenetv2k16", "torchreid_resnet50_market1501"]
    for name in ("vox", "taichi", "ted"):
        assert set(protocol_weights(get_protocol(name))) <= set(REGISTRY)
