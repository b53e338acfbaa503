"""reports.provenance: what every report prints about where its numbers come from."""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
import shutil
import subprocess

import pytest

from reports.provenance import git_commit, now, page_context, versions

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def _no_enclosing_repository(tmp_path, monkeypatch):
    """Whatever the machine's temp folder lies in, git must not find a repository above it."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)


def _git(repo, *args) -> str:
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", "-C", str(repo), *env_args, *args], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q")
    (path / "tracked.txt").write_text("one\n")
    _git(path, "add", "tracked.txt")
    _git(path, "commit", "-q", "-m", "first")
    return path


@needs_git
def test_git_commit_is_head_and_marks_changed_tracked_files(repo):
    head = _git(repo, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert git_commit(repo) == head
    (repo / "untracked.txt").write_text("scratch\n")  # untracked files do not count
    assert git_commit(repo) == head
    (repo / "tracked.txt").write_text("two\n")
    assert git_commit(repo) == f"{head}+dirty"
    _git(repo, "commit", "-q", "-am", "second")
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD") != head


@needs_git
def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_commit(plain) == "unknown"
    assert git_commit(tmp_path / "does-not-exist") == "unknown"


def test_git_commit_without_git_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable to be found
    assert git_commit(tmp_path) == "unknown"


def test_versions_names_python_and_each_package():
    found = versions(("numpy", "pandas", "surely-not-an-installed-package"))
    assert found["python"] == platform.python_version()
    import numpy
    import pandas

    assert found["numpy"] == numpy.__version__ and found["pandas"] == pandas.__version__
    assert found["surely-not-an-installed-package"] == "not installed"
    assert list(found) == ["python", "numpy", "pandas", "surely-not-an-installed-package"]
    assert {"animbench", "torch", "torchvision", "numpy", "pandas", "snakemake"} <= set(versions())


def test_now_is_utc_to_the_minute():
    before = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    stamp = now()
    after = dt.datetime.now(dt.UTC)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", stamp)
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M UTC").replace(tzinfo=dt.UTC)
    assert before <= parsed <= after


def test_page_context_holds_commit_versions_time_seed_and_config(tmp_path):
    config = {"seed": 7, "runs": {"fomm": {"method": "fomm"}}, "alpha": [1, 2]}
    context = page_context(config, "demo.yaml", tmp_path)
    assert set(context) == {"commit", "versions", "generated", "seed", "config_name", "config_text"}
    assert context["commit"] == "unknown"  # tmp_path is no repository
    assert context["seed"] == 7 and context["config_name"] == "demo.yaml"
    assert context["versions"]["python"] == platform.python_version()
    assert json.loads(context["config_text"]) == config
    # Sorted keys: the same config prints the same text whatever its key order.
    assert context["config_text"].index('"alpha"') < context["config_text"].index('"runs"')
    shuffled = page_context({"alpha": [1, 2], "runs": {"fomm": {"method": "fomm"}}, "seed": 7},
                            "demo.yaml", tmp_path)
    assert shuffled["config_text"] == context["config_text"]
    with pytest.raises(KeyError, match="seed"):
        page_context({"runs": {}}, "demo.yaml", tmp_path)
