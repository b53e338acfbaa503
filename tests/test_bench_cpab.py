"""Smoke test: the CPAB benchmark script still runs end to end (tiny sizes, ratios ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_cpab.py"


def test_bench_cpab_quick_runs():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratios = [line for line in proc.stdout.splitlines() if line.startswith("RATIO")]
    # warp 4, fit 2 cases x 1 amplitude (quick) x 2, end to end 2, memory 1
    assert len(ratios) == 4 + 4 + 2 + 1, proc.stdout
