"""Does data loading keep up with training? Loader pairs/s against training pairs/s.

Run: ``python tests/benchmarks/bench_loader.py [--method-config PATH]`` from the repo root.
It generates the demo synthetic dataset in a temporary folder, measures the training-pair
loader (``num_workers`` 0 and 1) and the training steps/s of the method config on the same
pairs, in the same process, and prints their ratio: above 1 the loader is not the bottleneck.
``measure_loader`` is importable for other benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_prep.loading import FramePairDataset  # noqa: E402
from data_prep.synthetic import SyntheticConfig, generate  # noqa: E402
from methods.engine.config import load_method_config  # noqa: E402
from methods.registry import build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

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


def measure_training(config: dict, dataset: Dataset, steps: int) -> float:
    """Training steps per second (forward, backward, Adam) of ``config`` on ``dataset`` batches."""
    import torch

    torch.manual_seed(0)
    model = build_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch_size = config["train_params"]["batch_size"]
    batches = list(DataLoader(dataset, batch_size=batch_size, drop_last=True))[: steps + 1]
    start = None
    for i, batch in enumerate(batches):
        if i == 1:  # the first step allocates; leave it out
            start = time.perf_counter()
        losses, _ = model(batch["source"], batch["driving"])
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (len(batches) - 1) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method-config", default=str(REPO / "methods/configs/fomm/synthetic.yaml"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    config = load_method_config(args.method_config)
    batch = config["train_params"]["batch_size"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate(SyntheticConfig(), Path(tmp) / "synthetic")
        print(f"demo dataset generated in {time.perf_counter() - t0:.2f} s")
        augmentation = config["dataset_params"].get("augmentation_params", REFERENCE_AUGMENTATION)
        ds = FramePairDataset(root, "train", augmentation=augmentation, num_repeats=50)
        steps = measure_training(config, ds, args.steps)
        train_rate = steps * batch
        print(f"training: {steps:.2f} steps/s = {train_rate:.1f} pairs/s (batch {batch}, {args.method_config})")
        for workers in (0, 1):
            rate = measure_loader(ds, batch_size=batch, num_workers=workers, seconds=args.seconds)
            print(
                f"loader num_workers={workers}: {rate:.0f} pairs/s, "
                f"{rate / train_rate:.1f}x the training rate"
                + ("" if rate > train_rate else "  <-- the loader is the bottleneck")
            )


if __name__ == "__main__":
    main()
