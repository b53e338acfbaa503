"""MGif (Monkey-Net's moving-gif): GIFs of animated animals, background removed, 256x256.

Not on YouTube: the processed dataset is one archive published on Yandex Disk (link in the
Monkey-Net README, ``sup-mat/MGif``). Params:

- ``archive``: a local archive file (zip or tar), an already unpacked folder, or a URL
  (``https://yadi.sk/...`` share links are resolved through Yandex Disk's public API);
- ``sha256``: optional checksum of the archive (the publisher gives none; the one actually used
  is recorded in ``metadata_source.json`` either way).

The published ``train/``/``test/`` split is kept. Without it, every GIF is split 80/20 the way
the reference does (``train_test_split(test_size=0.2, random_state=0)``: a seed-0 permutation,
the first ceil(20%) to test), over the sorted names (the reference used directory order).
Each GIF becomes a PNG-frame video; unreadable GIFs are recorded ``corrupt``.
"""

from __future__ import annotations

import json
import math
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence
from tqdm import tqdm

from data_prep.availability import write_availability
from data_prep.datasets import register_dataset
from data_prep.fetch import fetch_file
from data_prep.io import atomic_dir, file_sha256, write_text
from data_prep.manifest import format_size, write_manifest
from data_prep.video import write_video

PUBLISHED_URL = "https://yadi.sk/d/5VdqLARizmnj3Q"
_YANDEX_API = "https://cloud-api.yandex.net/v1/disk/public/resources/download?public_key="
KEYS = ("archive", "sha256", "size", "archive_dir", "progress")


def resolve_url(url: str) -> str:
    """A direct download URL for ``url`` (Yandex Disk share links go through its public API)."""
    host = urllib.parse.urlparse(url).netloc
    if host in ("yadi.sk", "disk.yandex.ru", "disk.yandex.com"):
        with urllib.request.urlopen(_YANDEX_API + urllib.parse.quote(url, safe=""), timeout=60) as r:
            return json.load(r)["href"]
    return url


def gif_frames(path: Path, size: tuple[int, int]) -> np.ndarray:
    """All frames of a GIF as ``(T, H, W, 3)`` uint8 RGB, resized to ``size`` when needed."""
    h, w = size
    frames = []
    with Image.open(path) as img:
        for frame in ImageSequence.Iterator(img):
            # Alpha is dropped as the reference loader does (it keeps the first three channels).
            rgb = np.asarray(frame.convert("RGBA"))[..., :3]
            if rgb.shape[:2] != (h, w):
                rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
            frames.append(rgb)
    if not frames:
        raise OSError(f"{path} has no frames")
    return np.stack(frames)


def split_videos(names: list[str], seed: int = 0, test_fraction: float = 0.2) -> dict[str, str]:
    """The reference's fallback split: seeded permutation, first ceil(20%) to test."""
    names = sorted(names)
    perm = np.random.RandomState(seed).permutation(len(names))
    n_test = math.ceil(test_fraction * len(names))
    test = {names[i] for i in perm[:n_test]}
    return {n: "test" if n in test else "train" for n in names}


def find_gifs(folder: Path) -> dict[str, tuple[Path, str | None]]:
    """GIFs under ``folder``: name -> (path, published split or None)."""
    for base in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if (base / "train").is_dir() and (base / "test").is_dir():
            return {p.stem: (p, split) for split in ("train", "test")
                    for p in sorted((base / split).glob("*.gif"))}
    return {p.stem: (p, None) for p in sorted(folder.rglob("*.gif"))}


def unpack(params: dict, out_dir: Path) -> tuple[Path, str]:
    """The unpacked archive folder and the archive's SHA-256 (empty for a folder)."""
    archive = params.get("archive") or PUBLISHED_URL
    local = Path(archive)
    if local.is_dir():
        return local, ""
    if not local.is_file():
        if "://" not in str(archive):
            raise FileNotFoundError(f"mgif: archive {archive} does not exist")
        dest_dir = Path(params.get("archive_dir", "resources/downloads/mgif"))
        local = fetch_file(resolve_url(str(archive)), dest_dir / "moving-gif.zip",
                           params.get("sha256"), progress=params.get("progress", True))
    sha = file_sha256(local)
    if params.get("sha256") and sha != params["sha256"]:
        raise ValueError(f"mgif: archive {local} has SHA-256 {sha}, expected {params['sha256']}")
    target = out_dir / ".source"
    if not (target / ".unpacked").is_file():
        with atomic_dir(target) as tmp:
            try:
                shutil.unpack_archive(str(local), str(tmp))
            except (shutil.ReadError, ValueError) as exc:
                raise ValueError(f"mgif: cannot unpack {local}: {exc}") from exc
            (tmp / ".unpacked").write_text(sha)
    return target, sha


@register_dataset("mgif")
def build(params: dict, out_dir: Path) -> Path:
    """Unpack the MGif archive and convert every GIF to a PNG-frame video under ``out_dir``."""
    unknown = sorted(set(params) - set(KEYS))
    if unknown:
        raise ValueError(f"mgif params: unknown key(s) {unknown}; known: {list(KEYS)}")
    size = params.get("size", 256)
    size = (size, size) if isinstance(size, int) else tuple(size)
    out_dir = Path(out_dir)
    source, sha = unpack(params, out_dir)
    gifs = find_gifs(source)
    if not gifs:
        raise ValueError(f"mgif: no .gif file under {source}")
    published = all(split is not None for _, split in gifs.values())
    splits = ({n: s for n, (_, s) in gifs.items()} if published
              else split_videos(list(gifs)))
    rows = []
    for name, (path, _) in tqdm(sorted(gifs.items()), desc="mgif", unit="gif",
                                disable=not params.get("progress", True)):
        dest = out_dir / splits[name] / name
        status, frames = "ok", 0
        if dest.is_dir():
            frames = sum(1 for _ in dest.glob("*.png"))
        else:
            try:
                video = gif_frames(path, size)
            except (OSError, SyntaxError, ValueError):
                status = "corrupt"
            else:
                write_video(dest, video, compress_level=1)
                frames = len(video)
        rows.append({"video": name, "split": splits[name], "frames": frames,
                     "size": format_size(size) if status == "ok" else "",
                     "source": f"mgif:{path.relative_to(source)}", "status": status})
    write_text(out_dir / "metadata_source.json", json.dumps({
        "dataset": "mgif", "archive": str(params.get("archive") or PUBLISHED_URL),
        "sha256": sha, "split": "published" if published else "seeded 80/20 (seed 0)",
    }, indent=2) + "\n")
    write_availability(out_dir, [dict(r, reason="" if r["status"] == "ok" else
                                      "GIF cannot be decoded") for r in rows])
    write_manifest(out_dir / "manifest.csv", rows)
    return out_dir
