"""The `animbench` command: every known failure ends in one clear line and exit status 1."""

from __future__ import annotations

import json

from animbench.cli import main
from tests.conftest import REPO


def test_prepare_rejects_unknown_parameter(tmp_path, capsys):
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "d"), "--params", '{"sise": 64}']) == 1
    assert "sise" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_train_rejects_misspelt_override(tiny_dataset, tmp_path, capsys):
    code = main([
        "train", "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
        "--overrides", json.dumps({"train_params.num_epoch": 1}),
        "--dataset", str(tiny_dataset), "--out", str(tmp_path / "run"),
    ])
    err = capsys.readouterr().err
    assert code == 1 and "num_epoch" in err and "synthetic.yaml" in err


def test_train_with_vgg19_and_no_weights_names_the_file_and_command(tiny_dataset, tmp_path, capsys):
    code = main([
        "train", "--method-config", str(REPO / "methods/configs/fomm/synthetic.yaml"),
        "--overrides", json.dumps({"train_params.perceptual_loss": "vgg19"}),
        "--dataset", str(tiny_dataset), "--out", str(tmp_path / "run"), "--weights-dir", str(tmp_path / "w"),
    ])
    err = capsys.readouterr().err
    assert code == 1
    assert str(tmp_path / "w" / "vgg19.pth") in err and "animbench weights fetch vgg19" in err


def test_reconstruct_with_truncated_checkpoint(tiny_dataset, tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    code = main(["reconstruct", "--checkpoint", str(bad), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "r")])
    assert code == 1 and "truncated or corrupt" in capsys.readouterr().err


def test_weights_check_reports_missing_file(tmp_path, capsys):
    assert main(["weights", "check", "vgg19", "--dir", str(tmp_path)]) == 1
    assert "download.pytorch.org/models/vgg19" in capsys.readouterr().err


def test_report_rejects_wrong_config_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text((REPO / "workflow/config/default.yaml").read_text().replace("table1:", "tabel1:"))
    assert main(["report", "table1", "--config", str(config), "--out", str(tmp_path / "t.html")]) == 1
    assert "tabel1" in capsys.readouterr().err


def test_reconstruct_released_style_checkpoint_with_method_config(tiny_dataset, tiny_fomm_config, tmp_path):
    """A reference checkpoint has no config and extra keys (discriminator, optimizers)."""
    import pandas as pd
    import yaml

    from methods.engine import checkpoints
    from methods.registry import build_model

    model = build_model(tiny_fomm_config, with_losses=False)
    released = {**checkpoints.model_state(model), "discriminator": {}, "optimizer_generator": {}, "epoch": 99}
    checkpoints.save(tmp_path / "vox-cpk.pth.tar", released)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(tiny_fomm_config))
    args = ["reconstruct", "--checkpoint", str(tmp_path / "vox-cpk.pth.tar"), "--dataset", str(tiny_dataset),
            "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(args) == 1  # no config in the file, none given
    assert main([*args, "--method-config", str(tmp_path / "m.yaml")]) == 0
    assert len(pd.read_csv(tmp_path / "r" / "index.csv")) == 2
