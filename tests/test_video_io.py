"""Video folder and stacked-PNG IO: round trips and every malformed-input error."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import video as video_io
from data_prep.video import (
    VideoError,
    frame_name,
    list_frames,
    read_frame,
    read_stacked_png,
    read_video,
    to_uint8,
    write_stacked_png,
    write_video,
)


def _frames(t: int = 3, h: int = 8, w: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_video_round_trip_is_lossless(tmp_path):
    frames = _frames()
    write_video(tmp_path / "v", frames)
    assert [p.name for p in list_frames(tmp_path / "v")] == [
        "0000000.png",
        "0000001.png",
        "0000002.png",
    ]
    out = read_video(tmp_path / "v", expected_size=(8, 6))
    assert out.dtype == np.uint8 and out.shape == (3, 8, 6, 3)
    np.testing.assert_array_equal(out, frames)
    np.testing.assert_array_equal(read_frame(tmp_path / "v" / frame_name(1)), frames[1])


def test_write_video_replaces_existing_folder(tmp_path):
    write_video(tmp_path / "v", _frames(t=5))
    write_video(tmp_path / "v", _frames(t=2, seed=1))
    assert len(list_frames(tmp_path / "v")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["v"]  # no temp leftovers


def test_write_video_rejects_float_frames(tmp_path):
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "v", _frames().astype(np.float32))
    assert not (tmp_path / "v").exists()


def test_stacked_png_round_trip(tmp_path):
    frames = _frames(t=4, h=5, w=7)
    write_stacked_png(tmp_path / "s.png", frames)
    with Image.open(tmp_path / "s.png") as img:
        assert img.size == (4 * 7, 5)
    np.testing.assert_array_equal(read_stacked_png(tmp_path / "s.png", 7), frames)
    # Frame i occupies columns [i*W, (i+1)*W).
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "s.png"))[:, 14:21], frames[2])


def test_stacked_png_width_not_multiple(tmp_path):
    write_stacked_png(tmp_path / "s.png", _frames(t=3, w=7))
    with pytest.raises(VideoError, match=r"s\.png.*not a multiple"):
        read_stacked_png(tmp_path / "s.png", 5)
    with pytest.raises(VideoError, match=r"s\.png"):
        read_stacked_png(tmp_path / "s.png", 0)


def test_missing_folder(tmp_path):
    with pytest.raises(VideoError, match="nope.*does not exist"):
        read_video(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a frame")
    with pytest.raises(VideoError, match="empty.*no frames"):
        list_frames(tmp_path / "empty")


def test_gap_in_frame_numbers(tmp_path):
    write_video(tmp_path / "v", _frames())
    (tmp_path / "v" / frame_name(1)).unlink()
    with pytest.raises(VideoError, match="misses frame 0000001.png"):
        list_frames(tmp_path / "v")


def test_missing_frame_file(tmp_path):
    with pytest.raises(VideoError, match="0000009.png"):
        read_frame(tmp_path / "0000009.png")


def test_corrupt_png(tmp_path):
    write_video(tmp_path / "v", _frames())
    bad = tmp_path / "v" / frame_name(1)
    bad.write_bytes(b"this is not a png at all")
    with pytest.raises(VideoError, match=r"0000001\.png"):
        read_video(tmp_path / "v")


def test_corrupt_pixel_data(tmp_path):
    write_video(tmp_path / "v", _frames(h=32, w=32))
    path = tmp_path / "v" / frame_name(0)
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    for k in range(idat + 8, idat + 40):  # scramble the compressed stream
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(VideoError, match=r"0000000\.png"):
        read_frame(path)


def test_truncated_png(tmp_path):
    write_video(tmp_path / "v", _frames(h=32, w=32))
    path = tmp_path / "v" / frame_name(2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"0000002\.png"):
        read_video(tmp_path / "v")


def _with_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """``png`` with an ancillary chunk inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    body = kind + payload
    chunk = struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunk + png[33:]


def test_fast_decoder_matches_pillow(tmp_path):
    """8-bit RGB frames go through libpng (OpenCV); ancillary chunks that could tempt a decoder
    into colour management (gamma, sRGB, significant bits) must not change a pixel."""
    frame = _frames(t=1, h=16, w=12)[0]
    write_video(tmp_path / "v", frame[None])
    png = (tmp_path / "v" / frame_name(0)).read_bytes()
    for kind, payload in ((b"gAMA", struct.pack(">I", 20000)), (b"sRGB", b"\x00"), (b"sBIT", b"\x05\x05\x05")):
        path = tmp_path / f"{kind.decode()}.png"
        path.write_bytes(_with_chunk(png, kind, payload))
        assert video_io._is_8bit_rgb_png(path.read_bytes()) == (16, 12)  # the fast path is taken
        np.testing.assert_array_equal(read_frame(path), frame)
        np.testing.assert_array_equal(video_io._decode_png_pil(path), frame)


def test_what_libpng_refuses_pillow_decides(tmp_path):
    """libpng refuses a PNG without its end chunk, which Pillow reads (as before the fast path):
    the result must not depend on which decoder ran."""
    frame = _frames(t=1, h=16, w=12)[0]
    write_video(tmp_path / "v", frame[None])
    path = tmp_path / "v" / frame_name(0)
    path.write_bytes(path.read_bytes()[:-12])  # drop IEND
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR_RGB) is None
    np.testing.assert_array_equal(read_frame(path), frame)


def test_wrong_resolution(tmp_path):
    write_video(tmp_path / "v", _frames(h=8, w=6))
    with pytest.raises(VideoError, match=r"0000000\.png is 8x6.*expected 6x8"):
        read_video(tmp_path / "v", expected_size=(6, 8))
    # A single odd frame inside a video is caught without expected_size too.
    Image.fromarray(_frames(t=1, h=9, w=6)[0]).save(tmp_path / "v" / frame_name(2))
    with pytest.raises(VideoError, match=r"0000002\.png is 9x6"):
        read_video(tmp_path / "v")


def test_mode_policy(tmp_path):
    rgb = _frames(t=1)[0]
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    with pytest.raises(VideoError, match=r"grey\.png has mode L"):
        read_frame(tmp_path / "grey.png")
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(opaque, mode="RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "opaque.png"), rgb)
    opaque[0, 0, 3] = 10
    Image.fromarray(opaque, mode="RGBA").save(tmp_path / "translucent.png")
    with pytest.raises(VideoError, match=r"translucent\.png is RGBA"):
        read_frame(tmp_path / "translucent.png")
    Image.fromarray(rgb).save(tmp_path / "f.jpg")
    with pytest.raises(VideoError, match=r"f\.jpg is not a PNG"):
        read_frame(tmp_path / "f.jpg")


def test_to_uint8_truncates():
    x = np.array([0.0, 0.5, 0.999, 1.0, 1.5, -0.2], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 127, 254, 255, 255, 0])
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(x)), to_uint8(x))
    assert to_uint8(torch.rand(2, 3, 4, 5)).shape == (2, 3, 4, 5)
    with pytest.raises(ValueError):
        to_uint8(np.array([np.nan]))
    with pytest.raises(ValueError):
        to_uint8(np.array([1, 2], dtype=np.uint8))


def test_wrong_size_first_frame_is_blamed(tmp_path):
    """Without an expected size the odd frame is the one that differs from most frames,
    even when it is frame 0 (it used to blame frame 1)."""
    write_video(tmp_path / "v", _frames(t=4))
    Image.fromarray(_frames(t=1, h=10)[0]).save(tmp_path / "v" / frame_name(0))
    with pytest.raises(VideoError, match=r"0000000\.png is 10x6 \(HxW\); the video's other frames are 8x6"):
        read_video(tmp_path / "v")
    Image.fromarray(_frames(t=1)[0]).save(tmp_path / "v" / frame_name(0))
    Image.fromarray(_frames(t=1, w=4)[0]).save(tmp_path / "v" / frame_name(2))
    with pytest.raises(VideoError, match=r"0000002\.png is 8x4"):
        read_video(tmp_path / "v")


def test_two_frames_of_different_size_name_both(tmp_path):
    write_video(tmp_path / "v", _frames(t=2))
    Image.fromarray(_frames(t=1, h=10)[0]).save(tmp_path / "v" / frame_name(1))
    with pytest.raises(VideoError, match=r"mixes frame sizes .*0000000\.png: 8x6, 0000001\.png: 10x6"):
        read_video(tmp_path / "v")


def test_expected_frame_count(tmp_path):
    write_video(tmp_path / "v", _frames(t=3))
    assert read_video(tmp_path / "v", expected_frames=3).shape[0] == 3
    (tmp_path / "v" / frame_name(2)).unlink()
    with pytest.raises(VideoError, match=r"holds 2 frame\(s\) but the manifest records 3"):
        read_video(tmp_path / "v", expected_frames=3)
