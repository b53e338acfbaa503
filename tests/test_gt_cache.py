"""Ground-truth cache: computed once, shared, invalidated by new weights or new frames."""

from __future__ import annotations

import numpy as np

from metrics.backends.base import BackendInfo
from metrics.gt_cache import GroundTruthCache

INFO = BackendInfo(name="kp", package="pkg", version="1.0", weights_sha256="a" * 64)


class Counter:
    """Counts how many frames it was asked to measure (the cost a cache must avoid)."""

    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.frames += len(frames)
        return frames.reshape(len(frames), -1)[:, :4].astype(np.float64)


def _video(seed: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)


def test_hit_miss_and_sharing_between_instances(tmp_path):
    frames, compute = _video(0), Counter()
    first = GroundTruthCache(tmp_path, "keypoints", INFO)
    values = first.get("v0", frames, compute)
    assert (first.hits, first.misses, compute.frames) == (0, 1, 3)
    # A second evaluation (another run) reads the stored values: no evaluator pass.
    second = GroundTruthCache(tmp_path, "keypoints", INFO)
    again = second.get("v0", frames, compute)
    assert (second.hits, second.misses, compute.frames) == (1, 0, 3)
    np.testing.assert_array_equal(values, again)
    assert (first.dir / "backend.json").exists()
    assert not list(first.dir.glob("*.tmp"))  # atomic writes leave nothing behind


def test_new_weights_or_version_invalidate(tmp_path):
    frames, compute = _video(1), Counter()
    GroundTruthCache(tmp_path, "identity", INFO).get("v", frames, compute)
    for info in (
        BackendInfo("kp", "pkg", "1.0", "b" * 64),  # new weights
        BackendInfo("kp", "pkg", "1.1", "a" * 64),  # new version
    ):
        cache = GroundTruthCache(tmp_path, "identity", info)
        cache.get("v", frames, compute)
        assert cache.misses == 1
    assert compute.frames == 9


def test_changed_frames_and_corrupt_files_are_recomputed(tmp_path):
    compute = Counter()
    cache = GroundTruthCache(tmp_path, "keypoints", INFO)
    cache.get("v", _video(2), compute)
    new = cache.get("v", _video(3), compute)  # the dataset was regenerated
    np.testing.assert_array_equal(new, Counter()(_video(3)))
    (cache.dir / "v.npz").write_bytes(b"not an npz")
    cache.get("v", _video(3), compute)
    assert cache.misses == 3 and compute.frames == 9
