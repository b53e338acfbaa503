"""The GPU check (tests/gpu/check.py) cannot rot: CI runs every step of it on CPU with --dry."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO
from tests.gpu.check import BUDGETS, orchestrate, print_table

pytestmark = pytest.mark.slow


def test_dry_run_passes_every_step_within_its_budget(tmp_path):
    done = subprocess.run(["bash", str(REPO / "tests/gpu/check.sh"), str(tmp_path), "--dry"],
                          cwd=REPO, capture_output=True, text=True, timeout=sum(BUDGETS.values()) + 120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dry"] is True
    assert [s["step"] for s in summary["steps"]] == list(BUDGETS)
    assert all(s["status"] == "pass" and s["seconds"] <= BUDGETS[s["step"]] for s in summary["steps"])
    assert f"{len(BUDGETS)} passed, 0 failed" in done.stdout
    train = next(s for s in summary["steps"] if s["step"] == "train_step")
    # Every method in the three precisions, each step's losses compared with float32's.
    assert {(r["method"], r["precision"]) for r in train["rows"]} >= {
        (m, p) for m in ("fomm", "mraa", "tpsmm", "cpab") for p in ("fp32", "bf16", "fp16")}


def test_a_step_over_its_budget_is_killed_and_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BUDGETS, "train_step", 1)  # the child cannot even import torch in 1 s
    assert orchestrate(tmp_path, dry=True, only=["train_step"]) == 1
    result = json.loads((tmp_path / "summary.json").read_text())["steps"][0]
    assert result["status"] == "timeout" and result["seconds"] < 10
    assert "1 passed" not in capsys.readouterr().out


def test_the_table_shows_every_row_and_note(capsys):
    print_table([{"step": "ddp", "status": "pass", "seconds": 3.0,
                  "rows": [{"processes": 1}, {"processes": 2}], "notes": ["two ranks on one GPU"]}])
    out = capsys.readouterr().out
    assert "processes=1" in out and "processes=2" in out and "note: two ranks on one GPU" in out
