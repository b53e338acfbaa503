"""Ground-truth detections and embeddings, measured once per dataset and evaluator.

Every run (and every ablation) of a dataset is compared with the same ground-truth frames, so
their keypoints and identity embeddings are computed once and kept under
``results/{dataset}/gt_cache/{kind}-{BackendInfo.cache_key()}/{video}.npz``. M runs then cost
M + 1 passes of each evaluator instead of 2M. The folder name carries the backend's version and
weights checksum, so new weights never read old values; each file also records the sha256 of
the frames it was computed from, so a regenerated dataset is measured again. Files are written
atomically, and a lock per folder keeps two evaluations running in parallel from computing the
same video twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from data_prep.io import atomic_path, write_text
from metrics.backends.base import BackendInfo


def frames_sha256(frames: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(str(frames.shape).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


class GroundTruthCache:
    """Per-video values of one evaluator on the ground truth, computed on first use."""

    def __init__(self, root: str | Path, kind: str, info: BackendInfo) -> None:
        self.dir = Path(root) / f"{kind}-{info.cache_key()}"
        self.info = info
        self.hits = 0
        self.misses = 0

    def _path(self, video: str) -> Path:
        return self.dir / f"{video}.npz"

    def _read(self, video: str, digest: str) -> np.ndarray | None:
        path = self._path(video)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                if str(data["frames_sha256"]) != digest:
                    return None  # the dataset was regenerated since: measure again
                return data["values"]
        except (OSError, ValueError, KeyError, EOFError):
            return None  # unreadable (e.g. a foreign file): recompute and replace it

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, video: str, frames: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Cached values of ``video`` when they match ``frames``, else ``compute(frames)`` stored."""
        digest = frames_sha256(frames)
        values = self._read(video, digest)
        if values is not None:
            self.hits += 1
            return values
        with self._locked():
            values = self._read(video, digest)  # another process may have written it meanwhile
            if values is not None:
                self.hits += 1
                return values
            values = np.asarray(compute(frames), dtype=np.float64)
            if len(values) != len(frames):
                raise ValueError(f"{self.info.name} returned {len(values)} results for {len(frames)} frames of {video}")
            info_path = self.dir / "backend.json"
            if not info_path.exists():
                write_text(info_path, json.dumps(asdict(self.info), indent=2))
            with atomic_path(self._path(video)) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez(handle, values=values, frames_sha256=np.array(digest))
            self.misses += 1
            return values
