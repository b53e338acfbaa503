"""Smoke test: the evaluation benchmark still runs end to end (one repetition, ratios ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_metrics.py"


@pytest.mark.slow
def test_bench_metrics_runs_all_four_ways():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--reps", "1", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for way in ("batched", "reference", "reference, our reader", "one frame"):
        assert any(line.startswith(way + " ") and "frames/s" in line for line in out.splitlines()), out
        if way != "batched":
            assert f"/ {way}: median" in out, out
