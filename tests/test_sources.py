"""data_prep.sources: where a chunk's frames come from without the network (a preprocessed copy
or the user's raw videos), and importing a preprocessed copy into the dataset folder."""

from __future__ import annotations

import dataclasses
import os

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from data_prep.download import VIDEO_EXTENSIONS
from data_prep.metadata import Chunk
from data_prep.preprocess import chunk_dir
from data_prep.sources import (
    VideoSources,
    find_preprocessed,
    find_raw_video,
    import_preprocessed,
)
from data_prep.video import frame_name, list_frames, read_frame, read_video, write_video

SIZE = (16, 16)


def _chunk(video_id="vidA", start=5, end=15, partition="train", person_id="") -> Chunk:
    return Chunk(video_id, start, end, 0, 0, 64, 64, 10.0, 64, 64, partition, person_id)


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_video_sources_default_to_nothing_and_no_network():
    sources = VideoSources()
    assert (sources.preprocessed, sources.raw_videos, sources.download) == (None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sources.download = "yt-dlp"  # type: ignore[misc]


def test_find_preprocessed_as_folder_or_with_the_mp4_suffix(tmp_path):
    chunk = _chunk()
    assert chunk.name == "vidA#000005#000015"
    assert find_preprocessed(tmp_path, chunk) is None
    # The reference's ".mp4" suffix, as a folder of PNGs or an mp4 file.
    suffixed = tmp_path / "train" / f"{chunk.name}.mp4"
    suffixed.mkdir(parents=True)
    assert find_preprocessed(tmp_path, chunk) == suffixed
    # The plain folder name wins over the suffixed one.
    plain = tmp_path / "train" / chunk.name
    plain.mkdir()
    assert find_preprocessed(tmp_path, chunk) == plain
    # Only the chunk's own partition is looked at.
    assert find_preprocessed(tmp_path, _chunk(partition="test")) is None


def test_find_preprocessed_uses_the_protocol_name_of_vox_and_ted_chunks(tmp_path):
    vox = _chunk(person_id="id10001")
    (tmp_path / "test").mkdir()
    target = tmp_path / "train" / "id10001#vidA#000005#000015.mp4"
    target.parent.mkdir()
    target.write_bytes(b"")
    assert find_preprocessed(tmp_path, vox) == target
    # TED: the #-parts of the video id appear reversed, as the reference script names them.
    ted = _chunk(video_id="ytid#100#200", partition="test")
    folder = tmp_path / "test" / "200#100#ytid#000005#000015"
    folder.mkdir()
    assert find_preprocessed(tmp_path, ted) == folder


def test_find_raw_video_by_youtube_id_and_any_video_extension(tmp_path):
    assert find_raw_video(tmp_path, "vidA") is None
    for ext in VIDEO_EXTENSIONS:
        (tmp_path / f"only{ext[1:]}{ext}").write_bytes(b"x")
        assert find_raw_video(tmp_path, f"only{ext[1:]}") == tmp_path / f"only{ext[1:]}{ext}"
    # Several copies: the first extension of the list (.mp4) is preferred.
    (tmp_path / "vidA.webm").write_bytes(b"x")
    (tmp_path / "vidA.mp4").write_bytes(b"x")
    assert find_raw_video(tmp_path, "vidA") == tmp_path / "vidA.mp4"
    # A folder with a video's name is not a video; other ids do not match.
    (tmp_path / "vidB.mp4").mkdir()
    assert find_raw_video(tmp_path, "vidB") is None
    assert find_raw_video(tmp_path, "vid") is None


def test_png_frames_of_the_right_size_are_copied_byte_for_byte(tmp_path):
    chunk = _chunk()
    src = tmp_path / "pre" / "train" / chunk.name
    write_video(src, _frames(4, *SIZE))
    root = tmp_path / "root"
    # A half-written folder of this chunk left by a killed run is cleared.
    stale = root / "train" / f".{chunk.name}.abc123.tmp"
    stale.mkdir(parents=True)
    result = import_preprocessed(src, chunk, root, SIZE)
    assert (result.chunk, result.status, result.frames, result.reason) == (chunk, "ok", 4, "")
    dest = chunk_dir(root, chunk)
    assert dest == root / "train" / chunk.name
    for i in range(4):
        assert (dest / frame_name(i)).read_bytes() == (src / frame_name(i)).read_bytes()
    assert not stale.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == [chunk.name]  # no temporary left
    assert dest.stat().st_mode & 0o777 == 0o755


def test_png_frames_of_another_size_are_resized(tmp_path):
    chunk = _chunk()
    src = tmp_path / "pre" / chunk.name
    frames = np.zeros((3, 32, 24, 3), np.uint8)
    frames[..., 0] = 200  # a flat colour survives any anti-aliased resize
    write_video(src, frames)
    for method in ("paper", "modern", "pil"):
        root = tmp_path / method
        result = import_preprocessed(src, chunk, root, SIZE, resize=method)
        assert (result.status, result.frames) == ("ok", 3)
        video = read_video(chunk_dir(root, chunk))
        assert video.shape == (3, *SIZE, 3)
        # scikit-image 0.14 ("paper") pads with black: only its border rows/columns darken.
        inner = video[:, 2:-2, 2:-2] if method == "paper" else video
        assert np.abs(inner.astype(int) - frames[0, 0, 0]).max() <= 1


def test_an_mp4_chunk_is_decoded_and_resized(tmp_path):
    chunk = _chunk()
    src = tmp_path / "pre" / "train" / f"{chunk.name}.mp4"
    src.parent.mkdir(parents=True)
    h, w = 24, 32
    writer = imageio_ffmpeg.write_frames(str(src), (w, h), fps=10, codec="libx264rgb",
                                         pix_fmt_out="rgb24", macro_block_size=1,
                                         output_params=["-qp", "0"])
    writer.send(None)
    for i in range(5):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[..., 2] = 40 * i  # blue encodes the frame index
        writer.send(frame)
    writer.close()
    root = tmp_path / "root"
    result = import_preprocessed(src, chunk, root, SIZE)
    assert (result.status, result.frames) == ("ok", 5)
    video = read_video(chunk_dir(root, chunk))
    assert video.shape == (5, *SIZE, 3)
    np.testing.assert_allclose(video[:, 8, 8, 2], 40 * np.arange(5), atol=2)


def test_a_corrupt_frame_is_a_corrupt_result_and_leaves_nothing(tmp_path):
    chunk = _chunk()
    src = tmp_path / "pre" / chunk.name
    write_video(src, _frames(3, *SIZE))
    data = (src / frame_name(1)).read_bytes()
    (src / frame_name(1)).write_bytes(data[: len(data) // 2])  # truncated
    root = tmp_path / "root"
    result = import_preprocessed(src, chunk, root, SIZE)
    assert (result.status, result.frames) == ("corrupt", 0)
    assert result.reason.startswith("preprocessed copy:") and frame_name(1) in result.reason
    assert not chunk_dir(root, chunk).exists()
    assert list((root / "train").iterdir()) == []  # the temporary folder is gone too


def test_an_undecodable_mp4_or_an_empty_folder_is_corrupt(tmp_path):
    chunk = _chunk()
    bad = tmp_path / "pre" / f"{chunk.name}.mp4"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    root = tmp_path / "root"
    result = import_preprocessed(bad, chunk, root, SIZE)
    assert (result.status, result.frames) == ("corrupt", 0) and "preprocessed copy" in result.reason
    empty = tmp_path / "pre" / "empty"
    empty.mkdir()
    result = import_preprocessed(empty, chunk, root, SIZE)
    assert result.status == "corrupt" and not chunk_dir(root, chunk).exists()
    assert list((root / "train").iterdir()) == []


def test_importing_again_replaces_an_earlier_copy(tmp_path):
    chunk = _chunk()
    root = tmp_path / "root"
    first, second = tmp_path / "a", tmp_path / "b"
    write_video(first, _frames(4, *SIZE, seed=1))
    write_video(second, _frames(2, *SIZE, seed=2))
    import_preprocessed(first, chunk, root, SIZE)
    # The destination exists: os.replace onto a non-empty folder fails, so the folder must be
    # cleared (or the import refused) for a re-import; whichever it does, no half state is left.
    try:
        result = import_preprocessed(second, chunk, root, SIZE)
    except OSError:
        result = None
    dest = chunk_dir(root, chunk)
    frames = list_frames(dest)
    if result is not None and result.status == "ok":
        assert len(frames) == 2
        assert np.array_equal(read_frame(frames[0]), read_frame(second / frame_name(0)))
    else:
        assert len(frames) == 4
    assert sorted(p.name for p in dest.parent.iterdir()) == [chunk.name]


def test_a_png_of_another_mode_is_refused_not_converted(tmp_path):
    chunk = _chunk()
    src = tmp_path / "pre" / chunk.name
    src.mkdir(parents=True)
    Image.fromarray(np.zeros(SIZE, np.uint8), mode="L").save(src / frame_name(0))
    result = import_preprocessed(src, chunk, tmp_path / "root", SIZE)
    assert result.status == "corrupt" and "mode L" in result.reason
    assert not os.path.exists(chunk_dir(tmp_path / "root", chunk))
