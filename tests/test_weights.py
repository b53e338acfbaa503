"""The weights registry: every entry is fetchable and checkable; failures are one clear line."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

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


def _serve(monkeypatch, content: bytes | None):
    """Downloads (through pooch) answer ``content``, or fail as offline when None."""

    def download(url, output_file, pooch_obj):
        if content is None:
            import requests

            raise requests.exceptions.ConnectionError("[Errno -2] Name or service not known")
        Path(output_file).write_bytes(content)

    monkeypatch.setattr(weights, "_downloader", lambda entry: download)


def test_fetch_offline_is_one_line_and_writes_nothing(tmp_path, entry, monkeypatch):
    _serve(monkeypatch, None)
    with pytest.raises(WeightsFetchError) as err:
        weights.fetch("tiny", tmp_path)
    assert "\n" not in str(err.value) and "example.invalid/tiny.pth" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_verifies_the_download(tmp_path, entry, monkeypatch):
    _, content, _ = entry
    _serve(monkeypatch, content)
    assert weights.fetch("tiny", tmp_path).read_bytes() == content
    (tmp_path / "tiny.pth").unlink()
    _serve(monkeypatch, b"x" * 12)
    with pytest.raises(WeightsFetchError, match="corrupt"):
        weights.fetch("tiny", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_file_is_replaced_only_by_a_verified_download(tmp_path, entry, monkeypatch):
    _, content, _ = entry
    (tmp_path / "tiny.pth").write_bytes(b"some")  # truncated
    assert "truncated, 4 bytes, expected 12" in weights.check("tiny", tmp_path)
    _serve(monkeypatch, None)
    with pytest.raises(WeightsFetchError):
        weights.fetch("tiny", tmp_path)
    assert (tmp_path / "tiny.pth").read_bytes() == b"some"  # nothing lost to a failed download
    _serve(monkeypatch, content)
    assert weights.fetch("tiny", tmp_path).read_bytes() == content


def test_an_unpublished_checksum_is_locked_at_the_first_fetch_and_checked_after(tmp_path, monkeypatch):
    lock = tmp_path / "weights.lock.csv"
    free = WeightsFile("free", "free.pth", "https://example.invalid/free.pth", "", "x", checksum_source="none")
    monkeypatch.setitem(REGISTRY, "free", free)
    folder = tmp_path / "w"
    _serve(monkeypatch, b"released bytes")
    assert weights.checksum_kind(free, lock) == "unpublished"
    weights.fetch("free", folder, lock)
    row = weights.read_lock(lock)["free"]
    assert row["sha256"] == hashlib.sha256(b"released bytes").hexdigest() and row["size"] == "14"
    assert weights.checksum_kind(free, lock) == "locked" and weights.check("free", folder, lock).startswith("ok")
    # Other bytes of the same size: refused, naming the lock file.
    (folder / "free.pth").write_bytes(b"released BYTES")
    with pytest.raises(MissingWeightsError, match=r"differs from .* recorded in weights.lock.csv.*changed"):
        weights.resolve_with_sha256("free", folder, lock)
    # A truncated copy: named as truncated, from the recorded size.
    (folder / "free.pth").write_bytes(b"released")
    assert "truncated, 8 bytes, expected 14" in weights.check("free", folder, lock)


def test_weights_lock_records_a_file_placed_by_hand(tmp_path, monkeypatch):
    lock = tmp_path / "weights.lock.csv"
    monkeypatch.setitem(REGISTRY, "free", WeightsFile("free", "free.pth", "https://example.invalid/f", "", "x"))
    (tmp_path / "free.pth").write_bytes(b"abc")
    assert weights.lock("free", tmp_path, lock).startswith("locked")
    assert weights.verify_file(REGISTRY["free"], tmp_path / "free.pth", lock)[0] == "ok"
    assert weights.lock("free", tmp_path, lock).startswith("ok")


def test_cli_check_and_fetch_offline_end_in_one_error_line(tmp_path, entry, monkeypatch, capsys):
    assert main(["weights", "check", "tiny", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "animbench weights fetch tiny" in err

    _serve(monkeypatch, None)
    assert main(["weights", "fetch", "tiny", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "could not download https://example.invalid/tiny.pth" in err
    assert main(["weights", "list"]) == 0 and "facenet_vggface2" in capsys.readouterr().out


def test_a_failed_official_location_falls_back_to_the_drive_folder_mirror(tmp_path, monkeypatch):
    import dataclasses

    lock = tmp_path / "weights.lock.csv"
    free = WeightsFile("rel", "rel.pth", "https://example.invalid/folder", "", "x", remote_path="/rel.pth",
                       mirror="https://drive.google.com/drive/folders/abc")
    monkeypatch.setitem(REGISTRY, "rel", free)
    tried = []

    def failing(url, output_file, pooch_obj):
        tried.append(url)
        raise OSError("503 Service Unavailable")

    def mirror(url, output_file, pooch_obj):
        tried.append(url)
        Path(output_file).write_bytes(b"from the mirror")

    monkeypatch.setattr(weights, "_downloader", lambda entry: failing)
    monkeypatch.setattr(weights, "_drive_folder", lambda entry: mirror)
    folder = tmp_path / "w"
    assert weights.fetch("rel", folder, lock).read_bytes() == b"from the mirror"
    assert tried == ["https://example.invalid/folder", "https://drive.google.com/drive/folders/abc"]
    # Both failing: one line naming both locations, nothing written.
    monkeypatch.setattr(weights, "_drive_folder", lambda entry: failing)
    monkeypatch.setitem(REGISTRY, "rel", dataclasses.replace(free, filename="other.pth"))
    with pytest.raises(WeightsFetchError) as err:
        weights.fetch("rel", folder, lock)
    assert "\n" not in str(err.value) and "example.invalid/folder" in str(err.value)
    assert "drive.google.com/drive/folders/abc" in str(err.value) and not (folder / "other.pth").exists()
