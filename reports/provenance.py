"""Where a report's numbers come from: code version, library versions, time."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def git_commit(repo: Path) -> str:
    """HEAD commit, with ``+dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def versions(packages: tuple[str, ...] = ("animbench", "torch", "torchvision", "numpy", "pandas", "snakemake")) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def page_context(config: dict[str, Any], config_name: str, repo: Path) -> dict[str, Any]:
    """What every table page prints about its run: commit, library versions, time, seed, config."""
    return {
        "commit": git_commit(repo),
        "versions": versions(),
        "generated": now(),
        "seed": config["seed"],
        "config_name": config_name,
        "config_text": json.dumps(config, indent=2, sort_keys=True),
    }
