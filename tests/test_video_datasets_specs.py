"""The YouTube dataset specs (data_prep.taichi, .ted, .vox): registered in both registries, tables
pinned by URL and SHA-256, the protocols' counts, and TED's refusal of the known-wrong table."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from data_prep import taichi, ted, vox
from data_prep.datasets import DATASETS, list_datasets
from data_prep.metadata import METADATA_COMMIT, MetadataError, read_metadata
from data_prep.video_dataset import (
    BAD_ROWS_NAME,
    CHUNKS_NAME,
    SOURCE_NAME,
    VIDEO_DATASETS,
    VideoDatasetSpec,
    VideoParams,
    fetch_metadata,
    get_spec,
    list_video_datasets,
    prepare_metadata,
    register_video_dataset,
)

HEADER = "video_id,start,end,bbox,fps,width,height,partition\n"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def test_each_module_registers_its_spec_in_both_registries():
    for module, name in ((taichi, "taichi"), (ted, "ted"), (vox, "vox")):
        assert module.SPEC.name == name
        assert VIDEO_DATASETS[name] is module.SPEC and get_spec(name) is module.SPEC
        assert name in DATASETS and callable(DATASETS[name])
    assert {"taichi", "ted", "vox"} == set(list_video_datasets())
    assert {"taichi", "ted", "vox", "synthetic", "mgif"} <= set(list_datasets())
    # MGif and the synthetic set are datasets, not YouTube datasets.
    assert "mgif" not in VIDEO_DATASETS and "synthetic" not in VIDEO_DATASETS


def test_a_second_spec_of_a_registered_name_is_refused():
    clash = VideoDatasetSpec(name="taichi", size=(64, 64), metadata_url=None, metadata_sha256=None)
    with pytest.raises(ValueError, match="'taichi' is already registered"):
        register_video_dataset(clash)
    assert get_spec("taichi") is taichi.SPEC
    with pytest.raises(ValueError, match="unknown video dataset 'mgif'; known: taichi, ted, vox"):
        get_spec("mgif")


@pytest.mark.parametrize("module, table", [(taichi, "taichi-metadata.csv"), (vox, "vox-metadata.csv")])
def test_published_tables_are_pinned_to_a_commit_and_a_sha256(module, table):
    spec = module.SPEC
    assert spec.metadata_url == module.METADATA_URL == (
        "https://raw.githubusercontent.com/AliaksandrSiarohin/video-preprocessing/"
        f"{METADATA_COMMIT}/{table}"
    )
    assert re.fullmatch(r"[0-9a-f]{40}", METADATA_COMMIT)  # a commit, not a branch
    assert SHA256.match(spec.metadata_sha256)
    assert spec.size == (256, 256) and spec.check_table is None


def test_protocol_counts_are_the_documented_ones():
    assert taichi.SPEC.protocol_counts == {"train": 3049, "test": 285}
    assert sum(taichi.SPEC.protocol_counts.values()) == 3334  # "3,334 chunks" (module docstring)
    # VoxCeleb: 19,550 train rows of which 308 repeat an earlier row, and 525 test rows of which
    # 3 are also train rows of a video whose first row is train (written to train only).
    assert vox.SPEC.protocol_counts == {"train": 19550 - 308, "test": 525 - 3}
    assert ted.SPEC.protocol_counts is None  # unknown: availability says so
    assert vox.SPEC.require_person_id and not taichi.SPEC.require_person_id
    assert not ted.SPEC.require_person_id
    assert taichi.SPEC.metadata_sha256 != vox.SPEC.metadata_sha256


def test_vox_rows_need_a_person_id(tmp_path):
    table = tmp_path / "vox.csv"
    table.write_text(HEADER + "vidA,0,10,0-0-50-50,25,100,100,train\n")
    with pytest.raises(MetadataError, match="person_id"):
        read_metadata(table, vox.SPEC.require_person_id)
    table.write_text(HEADER.rstrip() + ",person_id\n" + "vidA,0,10,0-0-50-50,25,100,100,train,\n"
                     + "vidA,0,10,0-0-50-50,25,100,100,test,id10001\n")
    chunks, bad = read_metadata(table, vox.SPEC.require_person_id)
    assert [c.name for c in chunks] == ["id10001#vidA#000000#000010"]
    assert [b.reason for b in bad] == ["person_id is empty"]


# ------------------------------------------------------------------------------ TED


def test_ted_has_no_download_url_and_says_where_the_table_is():
    spec = ted.SPEC
    assert spec.size == (384, 384)
    assert spec.metadata_url is None and spec.metadata_sha256 is None
    assert spec.check_table is ted.check_table and spec.metadata_help == ted.HELP
    assert "articulated-animation/issues/12" in ted.HELP and "params.metadata" in ted.HELP
    assert all(SHA256.match(sha) for sha in ted.KNOWN_BAD_SHA256)


def test_ted_without_a_table_stops_before_any_network_access(tmp_path, monkeypatch):
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    params = VideoParams.from_dict({"metadata_dir": str(tmp_path), "progress": False})
    with pytest.raises(MetadataError, match="no official metadata URL") as err:
        fetch_metadata(ted.SPEC, params)
    assert ted.HELP in str(err.value)
    with pytest.raises(MetadataError, match="no official metadata URL"):
        DATASETS["ted"]({"metadata_dir": str(tmp_path), "progress": False}, tmp_path / "out")
    assert not (tmp_path / "out" / CHUNKS_NAME).exists()


def _wrong_ted_table(path):
    """Shaped like the MRAA repository's data/ted-metadata.csv: start = end = 0, the frame range
    folded into video_id, every row train."""
    path.write_text(HEADER + "".join(
        f"yt{i}#{100 * i}#{100 * i + 80},0,0,10-10-200-200,25,1280,720,train\n" for i in range(4)
    ))
    return path


def _good_ted_table(path):
    path.write_text(HEADER
                    + "ytA#0#80,0,80,10-10-200-200,25,1280,720,train\n"
                    + "ytB#10#90,10,90,10-10-200-200,25,1280,720,test\n")
    return path


def test_ted_refuses_the_known_wrong_table_by_its_content(tmp_path):
    path = _wrong_ted_table(tmp_path / "ted-metadata.csv")
    chunks, bad = read_metadata(path)
    assert chunks == [] and len(bad) == 4
    with pytest.raises(MetadataError, match="start = end = 0") as err:
        ted.check_table(path, chunks, bad)
    assert ted.HELP in str(err.value)
    # Through the dataset's first stage: nothing is written.
    params = VideoParams.from_dict({"metadata": str(path), "progress": False})
    with pytest.raises(MetadataError, match="start = end = 0"):
        prepare_metadata(ted.SPEC, params, tmp_path / "out")
    assert not (tmp_path / "out" / CHUNKS_NAME).exists()


def test_ted_refuses_a_table_known_by_its_sha256(tmp_path, monkeypatch):
    path = _good_ted_table(tmp_path / "table.csv")
    chunks, bad = read_metadata(path)
    ted.check_table(path, chunks, bad)  # a sound table passes
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(ted, "KNOWN_BAD_SHA256", {sha})
    with pytest.raises(MetadataError, match="known to be wrong"):
        ted.check_table(path, chunks, bad)


def test_ted_refuses_a_table_without_a_test_split(tmp_path):
    path = tmp_path / "train_only.csv"
    path.write_text(HEADER + "ytA#0#80,0,80,10-10-200-200,25,1280,720,train\n")
    chunks, bad = read_metadata(path)
    with pytest.raises(MetadataError, match="no row is in the test partition"):
        ted.check_table(path, chunks, bad)


def test_ted_accepts_the_corrected_table_and_names_chunks_as_the_reference(tmp_path):
    path = _good_ted_table(tmp_path / "ted384-metadata.csv")
    params = VideoParams.from_dict({"metadata": str(path), "progress": False})
    chunks = prepare_metadata(ted.SPEC, params, tmp_path / "out")
    # <youtube id>#a#b appears reversed (b#a#<youtube id>#start#end); downloads use the id.
    assert [c.name for c in chunks] == ["80#0#ytA#000000#000080", "90#10#ytB#000010#000090"]
    assert [c.youtube_id for c in chunks] == ["ytA", "ytB"]
    source = json.loads((tmp_path / "out" / SOURCE_NAME).read_text())
    # The table actually used is recorded by its SHA-256, so runs can be compared.
    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["url"] is None and source["valid_rows"] == 2
    assert (tmp_path / "out" / BAD_ROWS_NAME).is_file()
