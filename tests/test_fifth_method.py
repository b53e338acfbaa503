"""A fifth method is its module, its configs, its test and the workflow config that runs it:
nothing in workflow/rules/, the schemas or any registry list is edited."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import REPO
from tests.test_workflow import SNAKEMAKE, _copy_repo, _env, _planned

pytestmark = pytest.mark.slow

# A new method: FOMM's model under a new name (a real method would bring its own networks).
MODULE = '''"""FOMM's networks under another name: the smallest possible new method."""

from methods.models.fomm import FOMM
from methods.registry import register_method


@register_method("fifth")
class Fifth(FOMM):
    pass
'''


def _add_fifth_method(repo):
    """Writes exactly the files a new method adds; returns them (relative to the copy)."""
    added = {
        "methods/models/fifth.py": MODULE,
        "methods/configs/fifth/schema.yaml": (REPO / "methods/configs/fomm/schema.yaml").read_text(),
        "methods/configs/fifth/synthetic.yaml": (REPO / "methods/configs/fomm/synthetic.yaml")
        .read_text()
        .replace("method: fomm", "method: fifth"),
    }
    for relative, text in added.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    return sorted(added)


def test_a_fifth_method_is_planned_by_touching_four_files_and_its_test(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    added = _add_fifth_method(repo)
    config = tmp_path / "fifth.yaml"
    config.write_text(yaml.safe_dump({
        "runs": {"fifth": {"method": "fifth"}, "fomm": {"method": "fomm"}},
        "table1": {"datasets": ["synthetic"], "runs": ["fomm", "fifth"]},
    }))
    run = tmp_path / "run"
    run.mkdir()
    # The copy's packages, not the installed ones: the new method lives only there.
    env = {**_env(), "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(repo / "Snakefile"), "reports/table1.html", "-n",
         "--cores", "1", "--configfile", str(config)],
        cwd=run, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    planned = _planned(result)
    assert {"fifth", "fomm"} <= planned["train"]
    assert {"fifth", "fomm"} <= planned["reconstruct"]
    assert {"fifth", "fomm"} <= planned["evaluate"]
    # Three files of the method, the workflow config and this test: five.
    assert len(added) + 2 == 5


def test_a_misspelt_method_is_one_line_naming_the_key(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({
        "runs": {"mine": {"method": "fom"}},
        "table1": {"datasets": ["synthetic"], "runs": ["mine"]},
    }))
    result = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "-n", "--configfile", str(config)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True,
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "typo.yaml" in out and "runs.mine.method: unknown method 'fom'" in out
    assert "InputFunctionException" not in out and "Traceback" not in out
    # No schema dump: the schema's descriptions never reach the user.
    assert "description" not in out


def test_an_unknown_key_is_one_line_naming_the_file_the_key_and_the_fix(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"runs": {"fomm": {"method": "fomm", "confg": "x.yaml"}}}))
    result = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "-n", "--configfile", str(config)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True,
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "typo.yaml" in out
    assert "unknown key 'confg' under 'runs.fomm' (allowed: checkpoint, config, method, overrides, seeds)" in out
    assert "description" not in out and len(out.splitlines()) < 10
