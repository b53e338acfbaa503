"""How much of a dataset a run actually had: from the dataset's manifest."""

from __future__ import annotations

from pathlib import Path

from data_prep.manifest import read_manifest


def dataset_usage(dataset_root: Path) -> dict[str, int | str]:
    """Counts of available / missing videos and frames per split."""
    manifest = read_manifest(dataset_root / "manifest.csv")
    usage: dict[str, int | str] = {"size": ", ".join(sorted(manifest["size"].astype(str).unique()))}
    for split in ("train", "test"):
        rows = manifest[manifest["split"] == split]
        ok = rows[rows["status"] == "ok"]
        usage[f"{split}_videos"] = int(len(ok))
        usage[f"{split}_listed"] = int(len(rows))
        usage[f"{split}_frames"] = int(ok["frames"].sum())
    return usage
