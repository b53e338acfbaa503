"""How much of a dataset a run actually had: from the dataset's manifest and availability report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.availability import AVAILABILITY_NAME, read_summary
from data_prep.manifest import read_manifest


def dataset_usage(dataset_root: Path) -> dict[str, Any]:
    """Counts of available / missing videos and frames per split.

    Real datasets also say how many of the *protocol's* chunks this run had (``*_protocol``,
    ``*_fraction``; None where the protocol's count is unknown, e.g. synthetic or TED) and
    where the per-chunk reasons are (``availability``), because a number measured on part of a
    test set is not comparable to the paper's.
    """
    manifest = read_manifest(dataset_root / "manifest.csv")
    # Missing and corrupt videos have no size: they must not add an empty resolution.
    sizes = manifest["size"].fillna("").astype(str)
    usage: dict[str, Any] = {"size": ", ".join(sorted(s for s in sizes.unique() if s))}
    summary = read_summary(dataset_root)
    for split in ("train", "test"):
        rows = manifest[manifest["split"] == split]
        ok = rows[rows["status"] == "ok"]
        usage[f"{split}_videos"] = int(len(ok))
        usage[f"{split}_listed"] = int(len(rows))
        usage[f"{split}_frames"] = int(ok["frames"].sum())
        protocol = summary.get(split, {}).get("protocol")
        usage[f"{split}_protocol"] = protocol
        usage[f"{split}_fraction"] = len(ok) / protocol if protocol else None
    availability = dataset_root / AVAILABILITY_NAME
    usage["availability"] = str(availability) if availability.is_file() else None
    return usage
