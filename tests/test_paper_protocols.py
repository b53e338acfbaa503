"""The paper-* protocols: the papers' evaluators beside the modern ones, in configs and Table 1."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from animbench.workflow_config import WorkflowConfigError, check_workflow_config
from data_prep.manifest import available_videos
from data_prep.video import read_video, write_stacked_png, write_video
from metrics.protocols import get_protocol, protocol_weights
from reports.table1 import protocol_sections, render_table1
from tests.conftest import REPO


def test_paper_protocols_name_the_papers_networks_and_their_weights():
    taichi, ted, vox, mgif = (get_protocol(f"paper-{d}") for d in ("taichi", "ted", "vox", "mgif"))
    for body in (taichi, ted):
        assert body.metrics == ("l1", "akd", "mkr", "aed")
        assert body.keypoints == {"backend": "rtpose", "mode": "body"} and body.identity == {"backend": "reid_baseline"}
        assert protocol_weights(body) == ["rtpose_vgg19_coco", "reid_baseline_ft_net"]
    assert vox.metrics == ("l1", "akd", "aed") and vox.keypoints["mode"] == "face"
    assert protocol_weights(vox) == ["fan_2d", "sfd", "openface_nn4_small2"]
    assert mgif.metrics == ("l1",) and protocol_weights(mgif) == []


def _config(**dataset):
    return {
        "seed": 0,
        "paths": {"datasets": "d", "results": "r", "weights": "w"},
        "datasets": {"taichi": {"builder": "taichi", "protocol": "taichi", **dataset}},
        "runs": {"fomm": {"method": "fomm"}},
        "table1": {"datasets": ["taichi"], "runs": ["fomm"]},
    }


def test_extra_protocols_are_checked_like_the_protocol():
    check_workflow_config(_config(extra_protocols=["paper-taichi"]), "c.yaml", REPO)
    with pytest.raises(WorkflowConfigError, match=r"c.yaml: datasets.taichi.extra_protocols: unknown protocol 'paper-taich'"):
        check_workflow_config(_config(extra_protocols=["paper-taich"]), "c.yaml", REPO)
    with pytest.raises(WorkflowConfigError, match="repeats its protocol 'taichi'"):
        check_workflow_config(_config(extra_protocols=["taichi"]), "c.yaml", REPO)


def test_sections_follow_each_dataset_s_extra_protocols():
    config = {"datasets": {"a": {"protocol": "x", "extra_protocols": ["p1", "p2"]},
                           "b": {"protocol": "y", "extra_protocols": ["q1"]}, "c": {"protocol": "z"}}}
    assert protocol_sections(config, ["a", "b", "c"]) == [
        {"a": None, "b": None, "c": None}, {"a": "p1", "b": "q1"}, {"a": "p2"}]


def _write(run_dir, tiny_dataset, l1, record=None, pictures=True):
    rows = []
    for video in available_videos(tiny_dataset, "test"):
        frames = read_video(tiny_dataset / "test" / video)
        if pictures:
            write_stacked_png(run_dir / "reconstruction" / f"{video}.png", frames)
        rows += [{"video": video, "frame": i, "l1": l1} for i in range(len(frames))]
    run_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
    if pictures:
        videos = available_videos(tiny_dataset, "test")
        pd.DataFrame({"video": videos, "frames": 0, "file": ""}).to_csv(run_dir / "reconstruction" / "index.csv", index=False)
    if record is not None:
        (run_dir / "metrics.json").write_text(json.dumps(record))


def test_table1_shows_each_protocol_s_numbers_in_its_own_labelled_section(tiny_dataset, tmp_path):
    """The same run measured with two protocols: two tables, every column headed by its protocol,
    each with its own numbers; evaluators of different protocols do not clash."""
    results = tmp_path / "results"
    record = {"evaluators": {"identity": {"name": "a", "package": "p", "version": "1", "weights_sha256": "aa" * 32}}}
    other = {"evaluators": {"identity": {"name": "b", "package": "q", "version": "2", "weights_sha256": "bb" * 32}}}
    _write(results / "synthetic" / "fomm", tiny_dataset, 0.0123, record)
    _write(results / "synthetic" / "fomm" / "protocols" / "l1", tiny_dataset, 0.0456, other, pictures=False)
    config = {
        "seed": 0,
        "paths": {"datasets": str(tiny_dataset.parent), "results": str(results), "weights": "w"},
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "synthetic", "extra_protocols": ["l1"]}},
        "runs": {"fomm": {"method": "fomm"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm"]},
    }
    html = render_table1(config, tmp_path / "table1.html", REPO).read_text()
    first, second = html.split('<table id="table1">')[1], html.split('<table id="table1-1">')[1]
    first, second = first.split("</table>")[0], second.split("</table>")[0]
    assert "protocol synthetic" in first and "0.0123" in first and "0.0456" not in first
    assert "protocol l1" in second and "0.0456" in second and "0.0123" not in second
    assert "Measured again with: l1" in html
    assert "aa" * 8 in html and "bb" * 8 in html  # both evaluators listed, each with its protocol


def _he_normal(net):
    """Random weights at He-normal scale: the default init leaves rtpose's heatmaps under its
    0.1 peak threshold, and a protocol that finds no joint in any frame is (rightly) an error."""
    import torch

    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
            torch.nn.init.normal_(module.bias, std=0.05)
    return net


@pytest.mark.slow  # the full-size VGG-19 rtpose (368 px) and ResNet-50 on 4 frames, on a CPU
def test_animbench_evaluate_with_paper_taichi_runs_the_full_size_networks_from_weights_files(
    tiny_dataset, tmp_path, monkeypatch
):
    """`animbench evaluate --protocol paper-taichi` end to end: random weights of the full-size
    architectures saved in the releases' file names, digests locked, loaded strictly through the
    registry; 18 body joints (NaN = missing) and ft_net features per frame."""
    import numpy as np
    import torch

    from animbench.cli import main
    from data_prep import weights
    from data_prep.manifest import write_manifest
    from metrics.backends.reid_baseline_identity import FtNet
    from metrics.backends.rtpose_body import RtposeVGG19

    video = available_videos(tiny_dataset, "test")[0]
    frames = read_video(tiny_dataset / "test" / video)[:2]
    dataset = tmp_path / "dataset"
    write_video(dataset / "test" / video, frames)
    write_manifest(dataset / "manifest.csv", [{"video": video, "split": "test", "frames": 2,
                                                "size": "64x64", "source": "synthetic", "status": "ok"}])
    recon = tmp_path / "reconstruction"
    write_stacked_png(recon / f"{video}.png", np.ascontiguousarray(frames[:, :, ::-1]))  # mirrored
    pd.DataFrame({"video": [video], "frames": [2], "file": [f"{video}.png"]}).to_csv(recon / "index.csv", index=False)

    weights_dir, lock = tmp_path / "weights", tmp_path / "weights.lock.csv"
    weights_dir.mkdir()
    monkeypatch.setattr(weights, "LOCK_FILE", lock)
    torch.save(_he_normal(RtposeVGG19()).state_dict(), weights_dir / "pose_model.pth")
    torch.manual_seed(1)
    torch.save(FtNet(751).state_dict(), weights_dir / "reid_model.pth")
    for name in ("rtpose_vgg19_coco", "reid_baseline_ft_net"):
        weights.lock(name, weights_dir, lock)

    out = tmp_path / "metrics.csv"
    assert main(["evaluate", "--reconstruction", str(recon), "--dataset", str(dataset), "--protocol",
                 "paper-taichi", "--out", str(out), "--weights-dir", str(weights_dir),
                 "--gt-cache", str(tmp_path / "cache"), "--no-progress"]) == 0
    table = pd.read_csv(out)
    assert list(table["frame"]) == [0, 1] and {"l1", "akd", "mkr", "aed"} <= set(table.columns)
    assert (table["aed"] > 0).all()  # a mirrored frame is another image to the re-id network
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["protocol"] == "paper-taichi"
    kp, ident = record["evaluators"]["keypoints"], record["evaluators"]["identity"]
    assert (kp["name"], kp["mode"]) == ("rtpose", "body") and ident["name"] == "reid_baseline"
    locked = weights.read_lock(lock)
    assert kp["weights_sha256"] == locked["rtpose_vgg19_coco"]["sha256"]
    assert ident["weights_sha256"] == locked["reid_baseline_ft_net"]["sha256"]
