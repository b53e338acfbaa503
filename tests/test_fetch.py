"""data_prep.fetch: one file from a URL (a file:// one stands in for the network) or a local
path, checked by SHA-256 and renamed into place only when it matches."""

from __future__ import annotations

import hashlib
import os
import urllib.request

import pytest

from data_prep.fetch import FetchError, copy_checked, fetch_file

CONTENT = b"video_id,start,end\nabc,0,10\n" * 50


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A local file reachable by a file:// URL, and its checksum."""
    src = tmp_path / "served" / "table.csv"
    src.parent.mkdir()
    src.write_bytes(CONTENT)
    return src, _sha(CONTENT)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_by_url_with_the_right_checksum_writes_the_file(served, tmp_path):
    src, sha = served
    dest = tmp_path / "out" / "sub" / "table.csv"  # parent folders are made
    assert fetch_file(src.as_uri(), dest, sha, progress=False) == dest
    assert dest.read_bytes() == CONTENT
    assert _leftovers(dest.parent) == []  # no temporary file left beside it
    # The result has a normal file's permissions, not mkstemp's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask
    # Without a checksum the download is taken as it comes.
    other = tmp_path / "out" / "unchecked.csv"
    fetch_file(src.as_uri(), other, None, progress=False)
    assert other.read_bytes() == CONTENT


def test_checksum_mismatch_names_both_digests_and_leaves_dest_untouched(served, tmp_path):
    src, sha = served
    dest = tmp_path / "out" / "table.csv"
    with pytest.raises(FetchError) as err:
        fetch_file(src.as_uri(), dest, "0" * 64, progress=False)
    assert sha in str(err.value) and "0" * 64 in str(err.value)
    assert not dest.exists() and _leftovers(dest.parent) == []
    # An existing file at dest (an older, different copy) is not replaced by a bad download.
    dest.write_bytes(b"old copy")
    with pytest.raises(FetchError, match="SHA-256 is"):
        fetch_file(src.as_uri(), dest, "f" * 64, progress=False)
    assert dest.read_bytes() == b"old copy" and _leftovers(dest.parent) == []


def test_a_present_file_with_the_right_checksum_is_not_downloaded_again(served, tmp_path, monkeypatch):
    src, sha = served
    dest = tmp_path / "table.csv"
    dest.write_bytes(CONTENT)
    calls = []

    class Opened(Exception):
        """Raised by the stand-in urlopen: the download was attempted."""

    def urlopen(*args, **kwargs):
        calls.append(args)
        raise Opened

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert fetch_file("https://example.invalid/table.csv", dest, sha, progress=False) == dest
    assert calls == []
    # A present file with another checksum is fetched again (here: the network is refused).
    dest.write_bytes(b"stale")
    with pytest.raises(Opened):
        fetch_file("https://example.invalid/table.csv", dest, sha, progress=False)
    assert len(calls) == 1


def test_a_stale_file_is_replaced_by_a_fresh_download(served, tmp_path):
    src, sha = served
    dest = tmp_path / "table.csv"
    dest.write_bytes(b"half a download")
    fetch_file(src.as_uri(), dest, sha, progress=False)
    assert dest.read_bytes() == CONTENT


def test_unreachable_url_is_a_fetch_error_naming_url_and_dest(tmp_path):
    missing = (tmp_path / "nowhere.csv").as_uri()
    dest = tmp_path / "out" / "table.csv"
    with pytest.raises(FetchError) as err:
        fetch_file(missing, dest, None, progress=False)
    assert missing in str(err.value) and str(dest) in str(err.value)
    assert not dest.exists()
    with pytest.raises(FetchError, match="cannot fetch"):
        fetch_file("not a url at all", dest, None, progress=False)


def test_network_errors_from_urlopen_become_fetch_errors(tmp_path, monkeypatch):
    import urllib.error

    def refuse(*_, **__):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(FetchError, match="offline"):
        fetch_file("https://example.invalid/x", tmp_path / "x", None, progress=False)


def test_copy_checked_copies_atomically_and_checks(served, tmp_path):
    src, sha = served
    dest = tmp_path / "copy" / "table.csv"
    assert copy_checked(src, dest, sha) == dest and dest.read_bytes() == CONTENT
    assert copy_checked(src, tmp_path / "copy" / "unchecked.csv").read_bytes() == CONTENT
    bad = tmp_path / "copy" / "bad.csv"
    with pytest.raises(FetchError) as err:
        copy_checked(src, bad, "a" * 64)
    assert sha in str(err.value) and "a" * 64 in str(err.value) and not bad.exists()
    with pytest.raises(FetchError, match="does not exist"):
        copy_checked(tmp_path / "absent.csv", tmp_path / "copy" / "x.csv")
    assert _leftovers(dest.parent) == []
