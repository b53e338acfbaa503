"""MGif: archive -> GIFs -> PNG-frame videos, published split kept, seeded 80/20 fallback."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.availability import read_summary
from data_prep.datasets import prepare_dataset
from data_prep.manifest import read_manifest
from data_prep.mgif import split_videos
from data_prep.video import read_video

SIZE = 32
COLOURS = [(255, 255, 255), (200, 30, 40), (20, 160, 60)]


def gif_frames(n: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A square moving right over white: exact palette colours, so GIF keeps them exactly."""
    out = np.full((n, SIZE, SIZE, 3), 255, np.uint8)
    for i in range(n):
        out[i, 8:20, 2 + 3 * i:14 + 3 * i] = colour
    return out


def write_gif(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = sum(COLOURS, ()) + (0, 0, 0) * (256 - len(COLOURS))
    images = []
    for f in frames:
        p = Image.new("P", (SIZE, SIZE))
        p.putpalette(palette)
        idx = np.zeros(f.shape[:2], np.uint8)
        for k, c in enumerate(COLOURS):
            idx[(f == c).all(-1)] = k
        p.putdata(idx.ravel().tolist())
        images.append(p)
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0,
                   disposal=1, optimize=False)


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(folder.parent))
    return archive


def test_published_split_is_kept_and_frames_are_exact(tmp_path):
    src = tmp_path / "moving-gif"
    train = gif_frames(5, COLOURS[1])
    write_gif(src / "train" / "cat001.gif", train)
    write_gif(src / "test" / "dog001.gif", gif_frames(4, COLOURS[2]))
    (src / "test" / "broken.gif").write_bytes(b"GIF89a not really")
    archive = zip_folder(src, tmp_path / "moving-gif.zip")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    # The archive fetched from a URL (a file:// one stands in for the publisher) with its checksum.
    root = prepare_dataset("mgif", {"archive": archive.as_uri(), "sha256": sha, "size": SIZE,
                                    "archive_dir": str(tmp_path / "dl"), "progress": False},
                           tmp_path / "mgif")
    df = read_manifest(root).set_index("video")
    assert df.loc["cat001", "split"] == "train" and df.loc["dog001", "split"] == "test"
    assert df.loc["cat001", "frames"] == 5 and df.loc["broken", "status"] == "corrupt"
    assert np.array_equal(read_video(root / "train" / "cat001"), train)
    summary = read_summary(root)
    assert (summary["test"]["listed"], summary["test"]["ok"], summary["test"]["corrupt"]) == (2, 1, 1)
    assert summary["test"]["protocol"] is None and summary["test"]["fraction"] == 0.5
    with pytest.raises(Exception, match="SHA-256"):
        prepare_dataset("mgif", {"archive": archive.as_uri(), "sha256": "0" * 64,
                                 "archive_dir": str(tmp_path / "dl2"), "progress": False},
                        tmp_path / "mgif2")


def test_fallback_split_is_seeded_80_20(tmp_path):
    src = tmp_path / "gifs"
    names = [f"animal{i:02d}" for i in range(10)]
    for i, name in enumerate(names):
        write_gif(src / f"{name}.gif", gif_frames(2 + i % 3, COLOURS[1 + i % 2]))
    root = prepare_dataset("mgif", {"archive": str(src), "size": 16, "progress": False},
                           tmp_path / "mgif")
    df = read_manifest(root)
    assert (df["split"] == "test").sum() == 2 and (df["split"] == "train").sum() == 8
    assert dict(zip(df["video"], df["split"], strict=True)) == split_videos(names)
    assert split_videos(names) == split_videos(list(reversed(names)))  # order-independent
    assert split_videos(names, seed=1) != split_videos(names)
    assert read_video(root / df["split"][0] / df["video"][0]).shape[1:] == (16, 16, 3)
