"""How much of the protocol a prepared dataset actually has: written per dataset, read by reports.

Two files next to ``manifest.csv``:

- ``availability.csv``: one row per chunk of the protocol's table (``video, split, status,
  reason, source``); rejected metadata rows appear with status ``invalid``;
- ``availability_summary.csv``: per split ``protocol`` (the protocol's chunk count, empty when
  the dataset defines none), ``listed``, ``ok``, ``missing``, ``corrupt`` and
  ``available_fraction`` = ok / protocol (ok / listed without a protocol count), plus the rows
  ``invalid_metadata_rows`` and ``metadata_warnings`` (their count in ``listed``).

:func:`read_summary` gives a report what to print beside every number; a dataset without a
summary (the synthetic one) is summarised from its manifest, every listed video counting.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from data_prep.io import atomic_path
from data_prep.manifest import SPLITS, read_manifest

AVAILABILITY_NAME = "availability.csv"
SUMMARY_NAME = "availability_summary.csv"
AVAILABILITY_COLUMNS = ["video", "split", "status", "reason", "source"]
SUMMARY_COLUMNS = ["split", "protocol", "listed", "ok", "missing", "corrupt", "available_fraction"]


def _write_csv(path: Path, columns: list[str], rows: Sequence[Mapping[str, object]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_availability(
    root: str | os.PathLike,
    chunks: Sequence[Mapping[str, str]],
    invalid: Sequence[Mapping[str, str]] = (),
    warnings: int = 0,
    protocol_counts: Mapping[str, int] | None = None,
) -> Path:
    """Write both files for the dataset at ``root``.

    ``chunks``: rows with ``video, split, status`` and optionally ``reason, source``;
    ``invalid``: rejected metadata rows with ``line, video_id, reason``.
    """
    root = Path(root)
    rows = [{c: str(r.get(c, "")) for c in AVAILABILITY_COLUMNS} for r in chunks]
    rows += [{"video": f"line {b['line']}: {b['video_id']}", "split": "", "status": "invalid",
              "reason": f"metadata row rejected: {b['reason']}", "source": ""} for b in invalid]
    _write_csv(root / AVAILABILITY_NAME, AVAILABILITY_COLUMNS, rows)
    summary = []
    for split in SPLITS:
        mine = [r for r in chunks if r["split"] == split]
        ok = sum(r["status"] == "ok" for r in mine)
        protocol = (protocol_counts or {}).get(split)
        summary.append({
            "split": split, "protocol": "" if protocol is None else protocol, "listed": len(mine),
            "ok": ok, "missing": sum(r["status"] == "missing" for r in mine),
            "corrupt": sum(r["status"] == "corrupt" for r in mine),
            "available_fraction": f"{ok / (protocol or len(mine) or 1):.4f}",
        })
    for name, count in (("invalid_metadata_rows", len(invalid)), ("metadata_warnings", warnings)):
        summary.append({"split": name, "protocol": "", "listed": count, "ok": 0, "missing": 0,
                        "corrupt": 0, "available_fraction": ""})
    _write_csv(root / SUMMARY_NAME, SUMMARY_COLUMNS, summary)
    return root / SUMMARY_NAME


def read_summary(root: str | os.PathLike) -> dict[str, dict[str, object]]:
    """Per split ``{"protocol", "listed", "ok", "missing", "corrupt", "fraction"}`` (protocol is
    None when unknown), plus ``invalid_metadata_rows`` / ``metadata_warnings`` as ``{"listed": n}``.
    """
    root = Path(root)
    path = root / SUMMARY_NAME
    if not path.is_file():
        df = read_manifest(root)
        out: dict[str, dict[str, object]] = {}
        for split in SPLITS:
            mine = df[df["split"] == split]
            ok = int((mine["status"] == "ok").sum())
            out[split] = {"protocol": None, "listed": len(mine), "ok": ok,
                          "missing": int((mine["status"] == "missing").sum()),
                          "corrupt": int((mine["status"] == "corrupt").sum()),
                          "fraction": ok / len(mine) if len(mine) else 0.0}
        return out
    out = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] in SPLITS:
                out[row["split"]] = {
                    "protocol": int(row["protocol"]) if row["protocol"] else None,
                    **{k: int(row[k]) for k in ("listed", "ok", "missing", "corrupt")},
                    "fraction": float(row["available_fraction"]),
                }
            else:
                out[row["split"]] = {"listed": int(row["listed"])}
    return out
