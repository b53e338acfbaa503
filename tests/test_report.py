"""Rendering table1.html from results on disk."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from data_prep.manifest import available_videos
from data_prep.video import read_video, write_stacked_png
from reports.paper import paper_table1
from reports.table1 import render_table1
from tests.conftest import REPO


def _fake_run(tiny_dataset, results, l1_by_video):
    run_dir = results / "synthetic" / "fomm"
    rows = []
    for video in available_videos(tiny_dataset, "test"):
        frames = read_video(tiny_dataset / "test" / video)
        write_stacked_png(run_dir / "reconstruction" / f"{video}.png", frames)
        rows += [{"video": video, "frame": i, "l1": l1_by_video[video]} for i in range(len(frames))]
    pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
    pd.DataFrame({"video": list(l1_by_video), "frames": 0, "file": ""}).to_csv(run_dir / "reconstruction" / "index.csv", index=False)
    (run_dir / "run.json").write_text(json.dumps({"method_config": "methods/configs/fomm/synthetic.yaml", "perceptual_loss": "pixel_pyramid", "losses_off": ["keypoint_semantic", "structure"], "epochs": 3, "train_seconds": 1.5}))
    return pd.DataFrame(rows)


def test_table1_html(tiny_dataset, tmp_path):
    videos = available_videos(tiny_dataset, "test")
    results = tmp_path / "results"
    table = _fake_run(tiny_dataset, results, {videos[0]: 0.01, videos[1]: 0.03})
    config = {
        "seed": 7,
        "paths": {"datasets": str(tiny_dataset.parent), "results": str(results), "weights": "w"},
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "synthetic"}},
        "runs": {"fomm": {"method": "fomm"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm"]},
    }
    out = render_table1(config, tmp_path / "table1.html", REPO, config_name="tiny.yaml")
    html = out.read_text()
    assert f"{table['l1'].mean():.4f}" in html  # frame-weighted number of this run
    assert "0.0200" in html  # per-video mean
    # Every paper number of Table 1 is shown beside ours.
    reference = paper_table1()
    cpab_taichi = reference[(reference.method == "CPAB") & (reference.dataset == "taichi")]
    assert cpab_taichi["AKD"].iloc[0] == "4.61"
    assert '<span class="paper">4.61</span>' in html  # shown exactly as the paper prints it
    assert "X2Face" in html and "pixel_pyramid" in html and "tiny.yaml" in html
    assert "keypoint_semantic, structure" in html  # the run's switched-off losses, stated
    assert re.search(r"2 / 2</td>", html)  # test videos available / listed
    assert html.count("data:image/png;base64,") == 2  # ground truth + one run
    assert "seed 7" in html


def test_table1_with_keypoint_and_identity_metrics_and_no_motion_row(tiny_dataset, tmp_path):
    videos = available_videos(tiny_dataset, "test")
    results = tmp_path / "results"
    _fake_run(tiny_dataset, results, {videos[0]: 0.01, videos[1]: 0.03})
    sha = "ab" * 32
    validation = {
        "keypoint_error_px": 0.8, "keypoint_error_px_p95": 1.9, "visibility_accuracy": 0.99, "frames": 13,
        "train_seconds": 20.0, "meets_targets": True,
        "targets": {"keypoint_error_px": 2.0, "visibility_accuracy": 0.95, "identity_top1": 0.9},
    }
    record = {"evaluators": {"keypoints": {"name": "synthetic-keypoints", "package": "animbench", "version": "v1", "weights_sha256": sha, "mode": "body", "validation": validation}}}
    for run, akd in (("fomm", 1.0), ("no-motion", 3.0)):
        run_dir = results / "synthetic" / run
        run_dir.mkdir(parents=True, exist_ok=True)
        table = pd.read_csv(results / "synthetic" / "fomm" / "metrics.csv")
        table["akd"] = akd
        table["akd_skip"] = ""
        table.loc[0, ["akd", "akd_skip"]] = [float("nan"), "no joint found in both frames"]
        table["mkr"], table["aed"] = 0.25, 0.5
        table.to_csv(run_dir / "metrics.csv", index=False)
        (run_dir / "metrics.json").write_text(json.dumps(record))
    config = {
        "seed": 7,
        "paths": {"datasets": str(tiny_dataset.parent), "results": str(results), "weights": "w"},
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "synthetic"}},
        "runs": {"fomm": {"method": "fomm"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm"]},
    }
    html = render_table1(config, tmp_path / "table1.html", REPO).read_text()
    assert "no motion (source frame copied)" in html
    # AKD of both rows, skipped frame excluded; FOMM's is lower on every video by the same 2.0,
    # so it is the best beyond noise (bold), and constant metrics have zero-width intervals.
    assert "<strong>1.000</strong><br>" in html and ">3.000<br>" in html
    assert '<span class="ci">1.000–1.000</span>' in html
    # MKR and AED equal in both rows: nobody is best beyond noise.
    assert ">0.2500<br>" in html and ">0.500<br>" in html and "<strong>0.2500" not in html
    assert "AKD: 1 (no joint found in both frames)" in html
    assert sha[:16] in html and "error 0.80 px (target ≤ 2.0)" in html and "meets targets" in html
    assert "fomm, no-motion" in html  # both measured by the same evaluator weights
    # A run measured by other weights than the rest of its dataset is refused.
    other = {"evaluators": {"keypoints": {**record["evaluators"]["keypoints"], "weights_sha256": "cd" * 32}}}
    (results / "synthetic" / "no-motion" / "metrics.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other keypoints evaluator weights"):
        render_table1(config, tmp_path / "t2.html", REPO)


def test_table1_shows_the_share_of_the_protocols_chunks(tiny_dataset, tmp_path):
    import shutil

    from data_prep.availability import write_availability
    from data_prep.manifest import read_manifest

    dataset = tmp_path / "datasets" / "synthetic"
    shutil.copytree(tiny_dataset, dataset)
    manifest = read_manifest(dataset / "manifest.csv")
    chunks = [{"video": v, "split": s, "status": st} for v, s, st in zip(manifest["video"], manifest["split"], manifest["status"], strict=True)]
    chunks.append({"video": "gone#000000#000010", "split": "test", "status": "missing", "reason": "removed"})
    write_availability(dataset, chunks, protocol_counts={"train": 40, "test": 4})
    videos = available_videos(dataset, "test")
    results = tmp_path / "results"
    _fake_run(dataset, results, {videos[0]: 0.01, videos[1]: 0.03})
    config = {
        "seed": 0,
        "paths": {"datasets": str(dataset.parent), "results": str(results), "weights": "w"},
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "l1"}},
        "runs": {"fomm": {"method": "fomm"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm"]},
    }
    html = render_table1(config, tmp_path / "table1.html", REPO).read_text()
    # Beside every number (the dataset's column header) and in the data table, with the reasons' file.
    assert "test 2 / 4 of the protocol's videos (50%)" in html
    assert re.search(r"\d+ / 40 \(\d+%\); 2 / 4 \(50%\)", html)
    assert "availability.csv" in html
