"""Smoke test: the CPAB benchmark script still runs end to end (tiny sizes, ratios ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_cpab.py"


def test_bench_cpab_quick_runs():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratios = [line for line in proc.stdout.splitlines() if line.startswith("RATIO")]
    assert len(ratios) == 3 + 4 + 2 + 1, proc.stdout
