"""Released checkpoints as runs: registry, digest before load, strict loading of the release
layout, the `checkpoint:` run kind through the DAG, and Table 1's released rows. Offline: the
releases are stand-ins (tests/standin_releases.py) of the real full-size architectures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from animbench.cli import main
from animbench.workflow_config import (
    WorkflowConfigError,
    check_workflow_config,
    load_workflow_config,
)
from data_prep import weights
from data_prep.io import file_sha256
from methods.engine.checkpoints import CheckpointError, load_model, read
from methods.engine.releases import RELEASES, release_method_config, resolve_checkpoint
from tests.conftest import REPO
from tests.standin_releases import DATA, register_standin, standin_payload, write_standin
from tests.test_workflow import _planned, _snakemake

EXPECTED = {
    "fomm_vox", "fomm_vox_adv", "fomm_taichi", "fomm_taichi_adv", "fomm_mgif",
    "mraa_vox", "mraa_taichi", "mraa_mgif", "mraa_ted", "mraa_ted_youtube",
    "tpsmm_vox", "tpsmm_taichi", "tpsmm_ted", "tpsmm_mgif",
}


@pytest.fixture
def lock(tmp_path, monkeypatch) -> Path:
    """The lock file of this test (the repository's is never written by tests)."""
    path = tmp_path / "weights.lock.csv"
    monkeypatch.setattr(weights, "LOCK_FILE", path)
    return path


def test_every_release_is_registered_with_its_official_location_and_checksum_kind(capsys):
    assert set(RELEASES.names()) == EXPECTED
    for name in EXPECTED:
        release, file = RELEASES[name], weights.REGISTRY[name]
        assert (REPO / release.config).is_file() and file.url.startswith("https://")
        if release.method == "mraa":  # Git LFS pointers publish size and SHA-256
            assert file.checksum_kind == "sha256" and file.size and "articulated-animation" in file.url
        else:  # a public Yandex Disk folder, its Google Drive twin as the mirror; no checksum
            assert file.checksum_kind == "unpublished" and file.remote_path == f"/{file.filename}"
            assert "yadi" in file.url or "yandex" in file.url
            assert file.mirror.startswith("https://drive.google.com/drive/folders/")
        assert release.align_corners is (release.method != "mraa")
    assert main(["weights", "list", *sorted(EXPECTED)]) == 0
    listed = capsys.readouterr().out
    for name in EXPECTED:
        assert name in listed and weights.REGISTRY[name].url in listed
    assert "unpublished" in listed and "sha256 " in listed and "mirror: https://drive.google.com" in listed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_release_layout_loads_strictly_into_our_full_size_architecture(name, tmp_path, caplog):
    path = write_standin(name, tmp_path)
    model, payload = load_model(path, release_method_config(name, REPO))
    release = RELEASES[name]
    assert set(release.extra_entries) <= set(payload)  # the entries we do not use are there...
    if release.has_avd:
        assert model.avd_network is not None  # ... the AVD network is loaded for animation's avd mode
    if release.dataset == "vox":
        # The stand-in's layout is the reference's, pinned from its code (tests/data).
        pinned = json.loads((DATA / f"{release.method}_vox256_state_dict.json").read_text())
        if "discriminator" in model.checkpoint_keys:  # the adversarial release (vox-adv)
            pinned["discriminator"] = json.loads((DATA / "fomm_discriminator_state_dict.json").read_text())["vox-adv-256"]
        for key in model.checkpoint_keys:
            assert [[k, list(v.shape)] for k, v in payload[key].items()] == pinned[key], key
    assert ("discriminator" in model.checkpoint_keys) is (name in ("fomm_vox_adv", "fomm_taichi_adv", "fomm_mgif"))


def _lock_standin(name: str, folder: Path, monkeypatch, lock: Path, payload: dict | None = None) -> Path:
    """The stand-in of ``name`` (or ``payload``) under a test name, its digest recorded in ``lock``."""
    release = register_standin(monkeypatch, name)
    path = folder / weights.REGISTRY[release.name].filename
    if payload is None:
        write_standin(release.name, folder, release=release)
    else:
        torch.save(payload, path)
    weights.lock(release.name, folder)
    return path


def test_a_missing_release_is_one_line_with_the_file_its_location_and_the_fetch_command(tmp_path, capsys, lock):
    assert main(["reconstruct", "--release", "fomm_vox", "--weights-dir", str(tmp_path),
                 "--dataset", str(tmp_path), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "vox-cpk.pth.tar" in err[0] and "https://yadi.sk/d/lEw8uRm140L_eQ" in err[0]
    assert "animbench weights fetch fomm_vox" in err[0]
    assert "drive.google.com" in err[0]  # the README's other location


def test_a_truncated_or_changed_release_is_refused_before_loading(tmp_path, monkeypatch, lock, capsys):
    path = _lock_standin("fomm_vox", tmp_path, monkeypatch, lock)
    assert resolve_checkpoint("standin_fomm_vox", tmp_path).checksum == "locked"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["reconstruct", "--release", "standin_fomm_vox", "--weights-dir", str(tmp_path),
                 "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "truncated" in capsys.readouterr().err
    changed = bytearray(data)
    changed[-100] ^= 1
    path.write_bytes(bytes(changed))
    with pytest.raises(weights.MissingWeightsError, match="the file changed"):
        resolve_checkpoint("standin_fomm_vox", tmp_path)


def test_a_release_of_another_architecture_names_the_missing_and_unexpected_parameters(tmp_path, monkeypatch, lock):
    other = standin_payload(RELEASES["tpsmm_vox"])
    _lock_standin("fomm_vox", tmp_path, monkeypatch, lock, payload=other)
    with pytest.raises(CheckpointError, match=r"lacks \['generator'\]; it holds .*inpainting_network"):
        resolved = resolve_checkpoint("standin_fomm_vox", tmp_path)
        load_model(resolved.path, release_method_config("standin_fomm_vox", REPO))
    renamed = standin_payload(RELEASES["fomm_vox"])
    renamed["kp_detector"]["extra.weight"] = renamed["kp_detector"].pop("kp.weight")
    path = tmp_path / "renamed.pth.tar"
    torch.save(renamed, path)
    with pytest.raises(CheckpointError, match=r"kp_detector .*1 missing keys: kp.weight; 1 unexpected keys: extra.weight"):
        load_model(path, release_method_config("standin_fomm_vox", REPO))


def test_a_release_that_would_run_code_is_refused_unread_even_with_its_digest_locked(tmp_path, monkeypatch, lock, capsys):
    from tests.test_checkpoints import _Exploit

    marker = tmp_path / "pwned"
    _lock_standin("fomm_vox", tmp_path, monkeypatch, lock, payload={"generator": _Exploit(marker), "kp_detector": {}})
    assert main(["reconstruct", "--release", "standin_fomm_vox", "--weights-dir", str(tmp_path),
                 "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused unread" in err[0]
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        read(tmp_path / "standin-vox-cpk.pth.tar")


@pytest.fixture(scope="module")
def frames_256(tmp_path_factory) -> Path:
    """A 256x256 synthetic dataset of two short test videos (the releases' frame size)."""
    from data_prep.synthetic import generate

    params = {"size": 256, "num_identities": 2, "num_test_identities": 1, "train_videos": 1,
              "test_videos": 2, "min_frames": 3, "max_frames": 3, "seed": 5}
    return generate(params, tmp_path_factory.mktemp("data256") / "synthetic")


def test_a_release_reconstructs_with_its_digest_recorded_and_animates_in_avd_mode(tmp_path, monkeypatch, lock, frames_256):
    path = _lock_standin("mraa_vox", tmp_path, monkeypatch, lock)
    out = tmp_path / "reconstruction"
    assert main(["reconstruct", "--release", "standin_mraa_vox", "--weights-dir", str(tmp_path),
                 "--dataset", str(frames_256), "--out", str(out), "--no-progress", "--threads", "2"]) == 0
    index = pd.read_csv(out / "index.csv")
    assert len(index) == 2 and (index["frames"] == 3).all()
    record = json.loads((out / "checkpoint.json").read_text())
    assert record["sha256"] == file_sha256(path) and record["release"] == "standin_mraa_vox"
    assert record["checked_against"] == "locked" and "methods/configs/mraa/vox.yaml" in record["method_config"]
    assert record["align_corners"] is False and "torch 1.4" in record["align_corners_why"]
    # Animation's avd mode uses the AVD network the release carries.
    video = sorted((frames_256 / "test").iterdir())[0]
    source = sorted(video.glob("*.png"))[0]
    assert main(["animate", "--release", "standin_mraa_vox", "--weights-dir", str(tmp_path), "--source", str(source),
                 "--driving", str(video), "--mode", "avd", "--out", str(tmp_path / "avd"), "--no-progress"]) == 0
    assert len(list((tmp_path / "avd").glob("*.png"))) == 3


# --- the workflow ------------------------------------------------------------------------------


def test_released_yaml_plans_every_release_on_its_dataset_and_no_training(tmp_path):
    result = _snakemake("-n", "--cores", "1", "reports/table1.html", "--configfile",
                        str(REPO / "workflow/config/released.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = _planned(result)
    assert "train" not in planned and "train_avd" not in planned
    config = yaml.safe_load((REPO / "workflow/config/released.yaml").read_text())
    pairs = {(d, run) for run, entry in config["runs"].items() for d in entry["checkpoint"]}
    assert {release for entry in config["runs"].values() for release in entry["checkpoint"].values()} == EXPECTED
    jobs = set(re.findall(r"output: results/(\w+)/([\w-]+)/reconstruction/index.csv", result.stdout))
    assert jobs == pairs | {(d, "no-motion") for d in config["table1"]["datasets"]}
    fetched = set(re.findall(r"wildcards: file=(\S+)", result.stdout))
    assert fetched == {weights.REGISTRY[name].filename for name in EXPECTED}
    # Both protocol families: every release (and no-motion row) with the dataset's paper-* one.
    extra = set(re.findall(r"output: results/(\w+)/([\w-]+)/protocols/paper-(\w+)/metrics.csv", result.stdout))
    assert extra == {(d, run, d) for d, run in pairs | {(d, "no-motion") for d in config["table1"]["datasets"]}}


def test_released_yaml_uses_paper_yaml_datasets():
    released = yaml.safe_load((REPO / "workflow/config/released.yaml").read_text())
    paper = yaml.safe_load((REPO / "workflow/config/paper.yaml").read_text())
    assert released["datasets"] == paper["datasets"] and released["paths"] == paper["paths"]
    config = load_workflow_config([REPO / "workflow/config/released.yaml"], REPO)
    assert all("checkpoint" in config["runs"][run] for run in config["table1"]["runs"])


@pytest.mark.parametrize(("run", "message"), [
    ({"method": "fomm", "checkpoint": "fomm_vox", "seeds": [0, 1]}, "both checkpoint and seeds"),
    ({"method": "fomm", "checkpoint": "fomm_voxx"}, "unknown released checkpoint 'fomm_voxx'"),
    ({"method": "mraa", "checkpoint": "fomm_vox"}, "is a fomm checkpoint, but the run's method is 'mraa'"),
    ({"method": "fomm", "checkpoint": {"synthetic": "fomm_vox"}}, "was trained on 'vox', not 'synthetic'"),
    ({"method": "fomm", "checkpoint": {"nowhere": "x/y.pth"}}, "dataset 'nowhere' is not defined"),
])
def test_a_wrong_checkpoint_run_is_a_one_line_config_error(run, message):
    config = load_workflow_config([], REPO)
    config["runs"]["bad"] = run
    with pytest.raises(WorkflowConfigError, match=message) as err:
        check_workflow_config(config, "x.yaml", REPO)
    assert "\n" not in str(err.value) and "runs.bad" in str(err.value)


@pytest.mark.slow
def test_a_standin_release_flows_through_the_dag_into_a_table1_row(tmp_path):
    """A real run: dataset, reconstruction with the full-size stand-in, L1, no-motion row, Table 1."""
    standin = write_standin("fomm_vox", tmp_path / "weights")
    config = {
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "l1", "params": {
            "size": 256, "num_identities": 2, "num_test_identities": 1, "train_videos": 1,
            "test_videos": 2, "min_frames": 3, "max_frames": 3, "seed": 5}}},
        "runs": {"fomm-standin": {"method": "fomm", "checkpoint": str(standin),
                                  "config": "methods/configs/fomm/vox.yaml"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm-standin"]},
    }
    path = tmp_path / "standin.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    run.mkdir()
    result = _snakemake("--cores", "2", "reports/table1.html", "--configfile", str(path), cwd=run)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rule train:" not in result.stdout + result.stderr
    record = json.loads((run / "results/synthetic/fomm-standin/reconstruction/checkpoint.json").read_text())
    assert record["sha256"] == file_sha256(standin) and record["release"] is None
    html = (run / "reports/table1.html").read_text()
    assert "FOMM — released checkpoint" in html and f"sha256 {record['sha256'][:12]}" in html
    l1 = pd.read_csv(run / "results/synthetic/fomm-standin/metrics.csv")["l1"]
    assert l1.notna().all() and len(l1) == 6



def test_run_kinds_say_which_runs_are_trained_and_where_a_released_run_exists():
    from reports import run_kinds

    config = {"runs": {"fomm": {"method": "fomm"},
                       "fomm-released": {"method": "fomm", "checkpoint": {"vox": "fomm_vox"}},
                       "mine": {"method": "fomm", "checkpoint": "x/mine.pth"}}}
    assert run_kinds.trained(config, ["fomm", "fomm-released", "mine"]) == ["fomm"]
    assert run_kinds.applies(config, "fomm-released", "vox") and not run_kinds.applies(config, "fomm-released", "ted")
    assert run_kinds.applies(config, "fomm", "ted") and run_kinds.applies(config, "mine", "ted")
    assert run_kinds.checkpoint_of(config, "mine", "ted") == "x/mine.pth"
    assert run_kinds.checkpoint_of(config, "fomm", "vox") is None
