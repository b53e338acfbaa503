"""Smoke test: the papers' evaluators benchmark still runs end to end (ratios ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_paper_evaluators.py"


@pytest.mark.slow  # full-size VGG-19 rtpose and ResNet-50 forward passes on CPU
def test_bench_paper_evaluators_times_all_three_both_ways():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--reps", "1", "--frames", "1", "--size", "48", "--threads", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("rtpose", "reid_baseline", "openface"):
        assert f"{name}: " in proc.stdout, proc.stdout
    assert proc.stdout.count("batched / one frame: median") == 3, proc.stdout
