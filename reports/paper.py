"""The numbers the papers report, shipped as data next to the renderer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "data"
METRICS = ("L1", "AKD", "MKR", "AED")
#: run name prefix -> the method's name in the papers' tables
PAPER_NAMES = {"fomm": "FOMM", "mraa": "MRAA", "tpsmm": "TPSMM", "cpab": "CPAB"}


def paper_table1() -> pd.DataFrame:
    """Table 1 of the CPAB paper: one row per (method, dataset), numbers kept as printed.

    Values are strings ("0.080", "17.65") so reports show exactly what the paper printed;
    empty string where the paper reports nothing.
    """
    return pd.read_csv(DATA / "paper_table1.csv", comment="#", dtype=str, keep_default_na=False)


def paper_name(run: str) -> str | None:
    """Paper method a run reproduces (``cpab-no-global`` -> None: ablations are Table 2)."""
    return PAPER_NAMES.get(run)
