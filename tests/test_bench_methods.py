"""Smoke test: the method benchmark still runs end to end for every registered method (tiny
sizes, the optimised side with bf16 autocast and channels_last; ratios ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from methods.registry import list_methods

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_methods.py"


# Three full training steps per method (TPSMM's two ResNet-18s included): ~20 s of CPU alone,
# minutes on a loaded machine.
@pytest.mark.slow
def test_bench_methods_quick_runs():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--amp", "bf16", "--channels-last"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratios = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RATIO")]
    assert ratios == list_methods(), proc.stdout
    assert "(bf16 autocast, channels_last)" in proc.stdout
