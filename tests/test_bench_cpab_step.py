"""Smoke test: the CPAB-vs-TPSMM training-step benchmark runs and prints its three ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_cpab_step.py"


@pytest.mark.slow  # a few full training steps of three models (the release's Adam fit included)
def test_bench_cpab_step_prints_ratios():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--reps", "1", "--steps", "1", "--batch", "2"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratios = [line for line in proc.stdout.splitlines() if line.startswith("RATIO")]
    assert [r.split(":")[0] for r in ratios] == [
        "RATIO cpab fast / tpsmm", "RATIO cpab adam / tpsmm", "RATIO cpab adam / cpab fast"
    ], proc.stdout
    assert all(float(r.split("median ")[1].split("x")[0]) > 0 for r in ratios)
