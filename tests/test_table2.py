"""reports/table2.html: which weights a run needs, rows not run for lack of them, the page, the DAG.

The report tests use fabricated metrics.csv files in tmp_path (fixtures, not results): they check
that the page puts each run's number beside the paper's and says why a row was not run.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from animbench.cli import main as cli_main
from data_prep.manifest import available_videos
from data_prep.weights import REGISTRY
from methods.engine.required_weights import missing_weights, required_weights
from reports.table2 import CPAB_ROWS, TPSMM_ROWS, paper_numbers, render_table2, runs_to_train
from tests.conftest import REPO
from tests.test_workflow import SNAKEMAKE, _env, _planned

# --- required_weights / missing_weights ------------------------------------------------------


def _cfg(**train_params) -> dict:
    return {
        "method": "cpab",
        "train_params": {"perceptual_loss": "pixel_pyramid", "loss_weights": {}, **train_params},
    }


@pytest.mark.parametrize(
    ("config", "names"),
    [
        (_cfg(), []),
        (
            {"method": "fomm", "train_params": {"loss_weights": {}}},
            ["vgg19"],
        ),  # the trainer's default loss
        (_cfg(perceptual_loss="vgg19"), ["vgg19"]),
        (_cfg(loss_weights={"keypoint_semantic": 1.0}), ["sam_vit_b"]),
        (
            _cfg(
                loss_weights={"keypoint_semantic": 1.0},
                keypoint_semantic_params={"variant": "vit_h"},
            ),
            ["sam_vit_h"],
        ),
        (_cfg(loss_weights={"keypoint_semantic": 0, "structure": 0}), []),
        (_cfg(loss_weights={"structure": 0.1}), ["dino_vitb8"]),
        (
            _cfg(perceptual_loss="vgg19", loss_weights={"keypoint_semantic": 1, "structure": 0.1}),
            ["vgg19", "sam_vit_b", "dino_vitb8"],
        ),
    ],
)
def test_required_weights(config, names):
    assert required_weights(config) == names


def test_required_weights_of_the_shipped_tpsmm_configs():
    def load(path):
        return yaml.safe_load((REPO / path).read_text())

    assert required_weights(load("methods/configs/tpsmm/taichi.yaml")) == ["vgg19"]
    for name in ("tps_only", "dropout", "multi_mask", "bg_loss", "warp_loss"):
        assert required_weights(load(f"methods/configs/tpsmm/ablations/taichi_{name}.yaml")) == [
            "vgg19"
        ]
        assert (
            required_weights(load(f"methods/configs/tpsmm/ablations/synthetic_{name}.yaml")) == []
        )


def test_missing_weights_names_the_file_and_the_fetch_command(tmp_path):
    config = _cfg(perceptual_loss="vgg19", loss_weights={"keypoint_semantic": 1, "structure": 0.1})
    (tmp_path / REGISTRY["vgg19"].filename).write_bytes(b"")  # presence is what is checked
    missing = missing_weights(config, tmp_path)
    assert [m.name for m in missing] == ["sam_vit_b", "dino_vitb8"]
    assert missing[0].path == tmp_path / "sam_vit_b_01ec64.pth"
    assert (
        missing[0].reason() == "sam_vit_b_01ec64.pth missing — `animbench weights fetch sam_vit_b`"
    )
    # A variant the registry does not know is an error, not a "missing" file.
    with pytest.raises(KeyError, match="sam_vit_q"):
        missing_weights(
            _cfg(
                loss_weights={"keypoint_semantic": 1}, keypoint_semantic_params={"variant": "vit_q"}
            ),
            tmp_path,
        )


# --- the page, on fabricated metrics ---------------------------------------------------------


def _fixture_metrics(run_dir: Path, videos: list[str], l1: float, akd: float) -> None:
    """A fabricated per-frame metrics table (test fixture)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {"video": v, "frame": i, "l1": l1, "akd": akd, "mkr": 0.0, "aed": 0.5}
        for v in videos
        for i in range(3)
    ]
    pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "run.json").write_text(
        json.dumps({"method_config": "fixture.yaml", "epochs": 4, "train_seconds": 1.0})
    )


def _setup(tmp_path: Path, tiny_dataset: Path) -> tuple[dict, Path]:
    # A fixture "repository" holding the runs' method configs, so that which weights each run
    # needs is decided by the same code as in the workflow.
    repo = tmp_path / "repo"
    (repo / "cfg").mkdir(parents=True)
    plain = {
        "method": "x",
        "train_params": {"perceptual_loss": "pixel_pyramid", "loss_weights": {}},
    }
    (repo / "cfg/plain.yaml").write_text(yaml.safe_dump(plain))
    results = tmp_path / "results"
    videos = available_videos(tiny_dataset, "test")
    for run, l1, akd in (
        ("base", 0.0451, 4.25),
        ("local", 0.0123, 1.75),
        ("tps", 0.0333, 2.5),
        ("no-motion", 0.0654, 4.0),
    ):
        _fixture_metrics(results / "synthetic" / run, videos, l1, akd)
    config = {
        "seed": 3,
        "paths": {
            "datasets": str(tiny_dataset.parent),
            "results": str(results),
            "weights": str(tmp_path / "weights"),
        },
        "datasets": {"synthetic": {"builder": "synthetic", "protocol": "synthetic"}},
        "runs": {
            "base": {"method": "x", "config": "cfg/plain.yaml"},
            "local": {"method": "x", "config": "cfg/plain.yaml"},
            "tps": {"method": "x", "config": "cfg/plain.yaml"},
            "with-sam": {
                "method": "x",
                "config": "cfg/plain.yaml",
                "overrides": {"train_params.loss_weights.keypoint_semantic": 1.0},
            },
            "with-dino": {
                "method": "x",
                "config": "cfg/plain.yaml",
                "overrides": {"train_params.loss_weights.structure": 0.1},
            },
        },
        "table2": {
            "dataset": "synthetic",
            "note": "fixture note",
            "cpab": {
                "tpsmm": "base",
                "cpab_local": "local",
                "keypoint_semantic": "with-sam",
                "full": "with-dino",
            },
            "tpsmm": {"tps_only": "tps", "warp_loss": "base"},
        },
    }
    return config, repo


def _row(html: str, label: str) -> str:
    found = re.search(
        r"<tr class=\"[\w-]+\"><td class=\"name\">" + re.escape(label) + r"</td>.*?</tr>",
        html,
        re.S,
    )
    assert found, label
    return found.group(0)


def test_table2_page_rows_numbers_and_not_run_reasons(tiny_dataset, tmp_path):
    config, repo = _setup(tmp_path, tiny_dataset)
    assert runs_to_train(config, repo) == [
        "base",
        "local",
        "tps",
    ]  # the SAM / DINO runs lack weights
    html = render_table2(
        config, tmp_path / "table2.html", repo, config_name="fixture.yaml"
    ).read_text()

    local = _row(html, "+CPAB (local)")
    # Ours, its interval over the test videos, then the paper's.
    assert re.search(r'>0\.0123<br><span class="ci">[0-9.]+–[0-9.]+</span><br><span class="paper">0\.044</span>', local)
    assert re.search(r'>1\.750<br><span class="ci">[0-9.]+–[0-9.]+</span><br><span class="paper">5\.10</span>', local)
    tpsmm = _row(html, "TPSMM")
    assert re.search(r'>0\.0451<br><span class="ci">[0-9.]+–[0-9.]+</span><br><span class="paper">0\.045</span>', tpsmm)
    assert "4.57" in tpsmm
    # Not run: the reason with the file and command, the paper's numbers, and none of ours.
    sam = _row(html, "+CPAB+Global+L_KS")
    assert "not run: sam_vit_b_01ec64.pth missing — `animbench weights fetch sam_vit_b`" in sam
    assert "4.78" in sam and not re.search(r"\d\.\d{4}", sam)
    assert "dino_vitbase8_pretrain.pth missing — `animbench weights fetch dino_vitb8`" in _row(
        html, "full model"
    )
    assert "not configured" in _row(html, "+CPAB+Global")
    release = _row(html, "full, release fit (adam, detached)")
    assert "not configured" in release and "—" in release  # no paper row for the release fit
    # TPSMM Table 4 beside its own paper numbers; the same run may fill rows of both tables.
    assert '>0.0333<br><span class="ci">0.0333–0.0333</span><br><span class="paper">0.048</span>' in _row(html, "TPS")
    assert re.search(r'>0\.0451<br><span class="ci">[0-9.]+–[0-9.]+</span><br><span class="paper">0\.045</span>',
                     _row(html, "+L_warp"))
    assert "4.66" in _row(html, "+Dropout")
    # The no-motion row in both sections, the runs table (each run once), provenance.
    assert html.count("no motion (source frame copied)") == 2
    assert html.count('<td class="name">synthetic</td><td class="name">base</td>') == 1
    assert "fixture note" in html and "fixture.yaml" in html and "seed 3" in html
    assert "Zhao &amp; Zhang, CVPR 2022" in html


def test_table2_refuses_a_run_that_has_its_weights_but_no_metrics(tiny_dataset, tmp_path):
    config, repo = _setup(tmp_path, tiny_dataset)
    weights = Path(config["paths"]["weights"])
    weights.mkdir()
    (weights / REGISTRY["sam_vit_b"].filename).write_bytes(b"")
    assert "with-sam" in runs_to_train(config, repo)
    with pytest.raises(FileNotFoundError, match=r"with-sam/metrics.csv is missing"):
        render_table2(config, tmp_path / "table2.html", repo)


def test_report_table2_command(tiny_dataset, tmp_path, capsys):
    config, _ = _setup(tmp_path, tiny_dataset)
    # The command resolves method configs in the real repository: name shipped ones.
    config["runs"] = {
        name: {
            "method": "tpsmm",
            "config": "methods/configs/tpsmm/ablations/synthetic_tps_only.yaml",
        }
        for name in ("base", "local", "tps")
    }
    config["table2"]["cpab"] = {"tpsmm": "base", "cpab_local": "local"}
    out = tmp_path / "page.html"
    assert (
        cli_main(["report", "table2", "--config-json", json.dumps(config), "--out", str(out)]) == 0
    )
    assert "report written to" in capsys.readouterr().out and out.is_file()


def test_paper_numbers_as_printed():
    cpab, tpsmm = paper_numbers("cpab"), paper_numbers("tpsmm")
    assert {r.paper_variant for r in CPAB_ROWS if r.paper_variant} == set(cpab)
    assert {r.paper_variant for r in TPSMM_ROWS} == set(tpsmm)
    assert cpab["full model"]["AKD"] == "4.61" and tpsmm["+L_warp"]["L1"] == "0.045"


# --- the DAG (dry runs) ----------------------------------------------------------------------


def _dry_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        # The target first: --configfile takes every value after it.
        [
            SNAKEMAKE,
            "reports/table2.html",
            "--snakefile",
            str(REPO / "Snakefile"),
            "-n",
            "--cores",
            "2",
            *args,
        ],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
    )


def test_default_dag_trains_the_demo_rows_and_skips_those_without_weights(tmp_path):
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trained = _planned(result)["train"]
    config = yaml.safe_load((REPO / "workflow/config/default.yaml").read_text())
    named = set(config["table2"]["cpab"].values()) | set(config["table2"]["tpsmm"].values())
    without_weights = {"cpab-ks-demo", "cpab-struc-demo", "cpab-full-demo"}
    assert without_weights <= named
    assert trained == named - without_weights
    assert "table2" in _planned(result) and "baseline_no_motion" in _planned(result)


def test_paper_dag_plans_table2_with_and_without_weights(tmp_path):
    paper = str(REPO / "workflow/config/paper.yaml")
    # No weights here: every paper row needs VGG-19 at least, so none is trained; the page still renders.
    result = _dry_run(tmp_path, "--configfile", paper)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train" not in _planned(result) and "table2" in _planned(result)
    # With every file in place (empty stand-ins: the plan checks presence), every row is trained.
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("vgg19", "sam_vit_b", "dino_vitb8"):
        (weights / REGISTRY[name].filename).write_bytes(b"")
    extra = tmp_path / "weights.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "datasets": "resources/datasets",
                    "results": "results",
                    "weights": str(weights),
                }
            }
        )
    )
    result = _dry_run(tmp_path, "--configfile", paper, str(extra))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(Path(paper).read_text())
    named = set(config["table2"]["cpab"].values()) | set(config["table2"]["tpsmm"].values())
    assert _planned(result)["train"] == named
