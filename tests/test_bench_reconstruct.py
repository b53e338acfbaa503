"""Smoke test: the reconstruction benchmark runs end to end for every registered method (its
equality check included; ratios of a 4-frame video mean nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from methods.registry import list_methods

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_reconstruct.py"


def test_bench_reconstruct_quick_runs():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--batch-sweep", "2,4"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("RATIO")]
    assert [row[1] for row in rows] == list_methods(), proc.stdout
    assert all("fps@2=" in " ".join(row) and "fps@4=" in " ".join(row) for row in rows)
