"""The weights registry: every entry is fetchable and checkable; failures are one clear line."""

from __future__ import annotations

import hashlib
import re
import urllib.error

import pytest

from animbench.cli import main
from data_prep import weights
from data_prep.weights import REGISTRY, MissingWeightsError, WeightsFetchError, WeightsFile

EXPECTED = {
    "vgg19", "openpifpaf_shufflenetv2k16", "fan_2d", "sfd", "facenet_vggface2",
    "torchreid_resnet50_market1501", "sam_vit_b", "dino_vitb8",
}


def test_registry_has_every_evaluator_and_loss_network_with_url_size_and_checksum_kind():
    assert EXPECTED <= set(REGISTRY)
    for entry in REGISTRY.values():
        assert entry.url.startswith(("http://", "https://")) and entry.filename
        assert entry.size is None or entry.size > 0
        assert entry.checksum_kind in {"sha256", "sha256-prefix", "unpublished"}
        assert entry.checksum_source, f"{entry.name}: say where the checksum comes from"
        # A torch-hub style name (name-<hex>.ext) publishes a sha256 prefix: the entry agrees.
        hub = re.search(r"-([0-9a-f]{6,})\.", entry.filename)
        if hub and entry.sha256_prefix:
            assert entry.sha256_prefix.startswith(hub.group(1)) or hub.group(1).startswith(entry.sha256_prefix)
    assert REGISTRY["facenet_vggface2"].checksum_kind == "sha256"
    assert REGISTRY["sam_vit_b"].size == 375_042_383


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """A registry entry whose checksum is that of a small local file."""
    content = b"some weights"
    digest = hashlib.sha256(content).hexdigest()
    item = WeightsFile("tiny", "tiny.pth", "https://example.invalid/tiny.pth", digest, "test file", size=len(content),
                       checksum_source="this test")
    monkeypatch.setitem(REGISTRY, "tiny", item)
    return item, content, digest


def test_resolve_returns_path_and_sha256_of_a_good_file(tmp_path, entry):
    _, content, digest = entry
    (tmp_path / "tiny.pth").write_bytes(content)
    path, sha = weights.resolve_with_sha256("tiny", tmp_path)
    assert path == tmp_path / "tiny.pth" and sha == digest
    assert weights.check("tiny", tmp_path).startswith("ok")


def test_truncated_or_different_file_is_corrupt_with_fetch_command(tmp_path, entry):
    (tmp_path / "tiny.pth").write_bytes(b"some")
    with pytest.raises(MissingWeightsError, match=r"corrupt.*animbench weights fetch tiny"):
        weights.resolve("tiny", tmp_path)
    (tmp_path / "tiny.pth").write_bytes(b"other thing!")  # same size, other bytes
    assert weights.check("tiny", tmp_path).startswith("corrupt")


def test_unpublished_checksum_is_reported_unverified(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "free", WeightsFile("free", "free.pth", "https://example.invalid/f", "", "x"))
    (tmp_path / "free.pth").write_bytes(b"abc")
    assert weights.check("free", tmp_path).startswith("unverified")
    assert weights.resolve_with_sha256("free", tmp_path)[1] == hashlib.sha256(b"abc").hexdigest()


def test_fetch_offline_is_one_line_and_writes_nothing(tmp_path, entry, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(weights.urllib.request, "urlretrieve", offline)
    with pytest.raises(WeightsFetchError) as err:
        weights.fetch("tiny", tmp_path)
    assert "\n" not in str(err.value) and "example.invalid/tiny.pth" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_verifies_the_download(tmp_path, entry, monkeypatch):
    _, content, _ = entry
    monkeypatch.setattr(weights.urllib.request, "urlretrieve", lambda url, target, reporthook=None: open(target, "wb").write(content))
    assert weights.fetch("tiny", tmp_path).read_bytes() == content
    (tmp_path / "tiny.pth").unlink()
    monkeypatch.setattr(weights.urllib.request, "urlretrieve", lambda url, target, reporthook=None: open(target, "wb").write(b"x" * 12))
    with pytest.raises(WeightsFetchError, match="corrupt"):
        weights.fetch("tiny", tmp_path)
    assert not (tmp_path / "tiny.pth").exists()


def test_cli_check_and_fetch_offline_end_in_one_error_line(tmp_path, entry, monkeypatch, capsys):
    assert main(["weights", "check", "tiny", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "animbench weights fetch tiny" in err

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(weights.urllib.request, "urlretrieve", offline)
    assert main(["weights", "fetch", "tiny", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "could not download https://example.invalid/tiny.pth" in err
    assert main(["weights", "list"]) == 0 and "facenet_vggface2" in capsys.readouterr().out
