"""A source video that cannot be decoded: ffmpeg's whole reason, and truncation told apart."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from data_prep.decode_errors import decode_failure, ffmpeg_reason, mp4_truncation
from data_prep.metadata import Chunk
from data_prep.preprocess import DecodeError, cut_chunks, probe_video

W, H, FPS = 32, 24, 10


def _mp4(path: Path, frames: int, faststart: bool = False) -> Path:
    """An H.264 MP4 whose frame i is grey level 4 * i (index at the end unless faststart)."""
    params = ["-movflags", "+faststart"] if faststart else []
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=FPS, codec="libx264", quality=None,
                                         macro_block_size=1, output_params=["-qp", "0", *params])
    writer.send(None)
    for i in range(frames):
        writer.send(np.full((H, W, 3), 4 * i, np.uint8).tobytes())
    writer.close()
    return path


def _cut(path: Path, fraction: float, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def test_a_whole_file_has_no_truncation(tmp_path):
    assert mp4_truncation(_mp4(tmp_path / "v.mp4", 20)) == ""
    assert mp4_truncation(tmp_path / "absent.mp4") == ""
    (tmp_path / "x.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 40)
    assert mp4_truncation(tmp_path / "x.mkv") == ""  # only the MP4 family's boxes are followed


def test_a_truncated_file_is_reported_as_truncated_not_as_ffmpeg_noise(tmp_path):
    cut = _cut(_mp4(tmp_path / "v.mp4", 40), 0.5, tmp_path / "cut.mp4")
    with pytest.raises(DecodeError) as err:
        probe_video(cut)
    message = str(err.value)
    assert "truncated: its 'mdat' box at byte" in message and "the file ends" in message
    assert "\n" not in message


def test_random_bytes_keep_ffmpeg_s_reason_not_only_its_first_line(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DecodeError) as err:
        probe_video(junk)
    message = str(err.value)
    assert "Could not load meta information" in message and "moov atom not found" in message
    assert "Invalid data found when processing input" in message
    assert "configuration:" not in message and " @ 0x" not in message and "\n" not in message


def test_ffmpeg_reason_drops_the_banner_and_repeats():
    text = ("Could not load meta information\n=== stderr ===\n\nffmpeg version n9 Copyright\n"
            "  built with gcc 16\n  configuration: --enable-gpl\n  libavutil      60.  8.100\n"
            "[in#0 @ 0x55d4] moov atom not found\n[in#0 @ 0x55d5] moov atom not found\n"
            "Error opening input files: Invalid data found when processing input\n")
    assert ffmpeg_reason(text) == ("Could not load meta information; [in#0] moov atom not found; "
                                   "Error opening input files: Invalid data found when processing input")
    assert len(ffmpeg_reason("x" * 5000)) == 600
    assert decode_failure("nowhere.mkv", "") == "no reason given by ffmpeg"


def test_a_chunk_cut_off_by_truncation_is_corrupt_and_not_kept_but_earlier_ones_are(tmp_path):
    """Index first (faststart), then cut: ffmpeg decodes the frames before the cut. The chunk
    that runs past it is 'corrupt: truncated', not 'ok, short'; one before the cut is kept."""
    cut = _cut(_mp4(tmp_path / "v.mp4", 60, faststart=True), 0.6, tmp_path / "cut.mp4")
    early = Chunk("cut", 0, 5, 0, 0, W, H, float(FPS), W, H, "train")
    late = Chunk("cut", 40, 60, 0, 0, W, H, float(FPS), W, H, "test")
    results = {r.chunk.partition: r for r in cut_chunks(cut, [early, late], tmp_path / "out", (16, 16))}
    assert (results["train"].status, results["train"].frames) == ("ok", 5)
    assert results["test"].status == "corrupt" and "truncated" in results["test"].reason
    assert not (tmp_path / "out" / "test" / late.name).exists()
    assert not any(p.name.startswith(".") for p in (tmp_path / "out" / "test").iterdir())
