"""reports.usage: how much of a dataset a run had, per split, and of the protocol's chunks."""

from __future__ import annotations

import pytest

from data_prep.availability import AVAILABILITY_NAME, SUMMARY_NAME, write_availability
from data_prep.manifest import write_manifest
from reports.usage import dataset_usage


def _row(video, split, frames, status="ok", size="64x64"):
    return {"video": video, "split": split, "frames": frames, "size": size if status == "ok" else "",
            "source": "test", "status": status}


def test_a_dataset_without_availability_report_counts_its_manifest(tmp_path):
    """The synthetic dataset: no protocol count, no availability file."""
    write_manifest(tmp_path / "manifest.csv", [
        _row("a", "train", 10), _row("b", "train", 12), _row("c", "test", 7), _row("d", "test", 5),
    ])
    usage = dataset_usage(tmp_path)
    assert usage == {
        "size": "64x64",
        "train_videos": 2, "train_listed": 2, "train_frames": 22,
        "train_protocol": None, "train_fraction": None,
        "test_videos": 2, "test_listed": 2, "test_frames": 12,
        "test_protocol": None, "test_fraction": None,
        "availability": None,
    }
    assert all(isinstance(usage[k], int) for k in ("train_videos", "train_frames", "test_frames"))


def test_a_real_dataset_reports_its_share_of_the_protocol(tmp_path):
    rows = [_row("a", "train", 10), _row("b", "train", 0, "missing"), _row("c", "train", 0, "corrupt"),
            _row("d", "test", 7), _row("e", "test", 0, "missing")]
    write_manifest(tmp_path / "manifest.csv", rows)
    write_availability(tmp_path, rows, protocol_counts={"train": 8, "test": 4})
    usage = dataset_usage(tmp_path)
    # Only ok videos count as available, and only their frames.
    assert (usage["train_videos"], usage["train_listed"], usage["train_frames"]) == (1, 3, 10)
    assert (usage["test_videos"], usage["test_listed"], usage["test_frames"]) == (1, 2, 7)
    assert (usage["train_protocol"], usage["test_protocol"]) == (8, 4)
    assert usage["train_fraction"] == pytest.approx(1 / 8)
    assert usage["test_fraction"] == pytest.approx(1 / 4)
    assert usage["availability"] == str(tmp_path / AVAILABILITY_NAME)


def test_a_dataset_without_protocol_counts_has_no_fraction(tmp_path):
    """TED: an availability report, but no protocol count to compare with."""
    rows = [_row("a", "train", 10), _row("d", "test", 7)]
    write_manifest(tmp_path / "manifest.csv", rows)
    write_availability(tmp_path, rows)
    assert (tmp_path / SUMMARY_NAME).is_file()
    usage = dataset_usage(tmp_path)
    assert usage["train_protocol"] is None and usage["train_fraction"] is None
    assert usage["test_protocol"] is None and usage["test_fraction"] is None
    assert usage["availability"] == str(tmp_path / AVAILABILITY_NAME)


def test_several_resolutions_are_all_listed(tmp_path):
    write_manifest(tmp_path / "manifest.csv", [
        _row("a", "train", 3, size="64x64"), _row("b", "test", 3, size="32x48"),
    ])
    assert dataset_usage(tmp_path)["size"] == "32x48, 64x64"


def test_missing_videos_do_not_add_an_empty_resolution(tmp_path):
    write_manifest(tmp_path / "manifest.csv", [
        _row("a", "train", 10), _row("b", "train", 0, "missing"), _row("c", "test", 4),
    ])
    assert dataset_usage(tmp_path)["size"] == "64x64"
