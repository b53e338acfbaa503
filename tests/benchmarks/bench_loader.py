"""Throughput of the training-pair loader (pairs/s).

Run: ``python -m tests.benchmarks.bench_loader`` (or with this file's path) from the repo root.
It generates the demo synthetic dataset in a temporary folder and prints pairs/s for
``num_workers`` 0 and 1. ``measure_loader`` is importable for other benchmarks.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_prep.loading import FramePairDataset  # noqa: E402
from data_prep.synthetic import SyntheticConfig, generate  # noqa: E402

REFERENCE_AUGMENTATION = {
    "flip_param": {"horizontal_flip": True, "time_flip": True},
    "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
}


def measure_loader(dataset: Dataset, batch_size: int, num_workers: int, seconds: float) -> float:
    """Pairs per second delivered by a shuffling DataLoader over ``dataset``.

    The first batch (worker start-up) is not timed; epochs are restarted (with ``set_epoch``
    when the dataset has it) until ``seconds`` have passed.
    """
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=True
    )
    if len(loader) < 2:
        raise ValueError(f"dataset of {len(dataset)} items gives < 2 batches of {batch_size}")
    pairs, epoch, start = 0, 0, None
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for batch in loader:
            if start is None:  # exclude start-up from the measurement
                start = time.perf_counter()
                continue
            pairs += len(batch["source"])
            if time.perf_counter() - start >= seconds:
                return pairs / (time.perf_counter() - start)
        epoch += 1


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate(SyntheticConfig(), Path(tmp) / "synthetic")
        print(f"demo dataset generated in {time.perf_counter() - t0:.2f} s")
        ds = FramePairDataset(root, "train", augmentation=REFERENCE_AUGMENTATION, num_repeats=50)
        for workers in (0, 1):
            rate = measure_loader(ds, batch_size=16, num_workers=workers, seconds=5.0)
            print(f"num_workers={workers}: {rate:.0f} pairs/s (batch 16, reference augmentation)")


if __name__ == "__main__":
    main()
