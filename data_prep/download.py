"""Download one source video with yt-dlp: resumable, with retries and a polite rate limit.

One call downloads one video (Snakemake runs one job per video, so a cluster or
``--resources downloads=N`` decides how many run at once). A video that cannot be had is not
an error: :func:`download_video` returns a :class:`DownloadResult` whose ``reason`` says why
(removed, private, blocked for scripted clients, geo-blocked, rate-limited, ...), and the caller
records it. yt-dlp keeps partial downloads as ``.part`` files and continues them on the next try.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".flv", ".m4v")
YOUTUBE_URL = "https://www.youtube.com/watch?v={id}"
# One stream (no merge needed), mp4 first, at most 1080p: the crops are 256/384 px, larger
# sources only cost disk. The reference scripts asked youtube-dl for the "best" mp4.
DEFAULT_FORMAT = "bestvideo[ext=mp4][height<=1080]/best[ext=mp4][height<=1080]/best[height<=1080]/best"

# yt-dlp's messages -> the reason recorded in the availability report (first match wins).
_REASONS = [
    (r"private video", "private"),
    (r"sign in to confirm|confirm you.re not a bot|cookies", "blocked: sign-in required (try a cookies file)"),
    (r"available in your country|geo.?restrict|blocked it in your country", "geo-blocked"),
    (r"copyright", "removed: copyright claim"),
    (r"terminated|account .* closed|has been removed|video unavailable|no longer available|does not exist", "removed"),
    (r"age.?restrict|inappropriate", "blocked: age-restricted (try a cookies file)"),
    (r"no such file|http error 404|not found", "not found at the source"),
    (r"http error 429|too many requests", "rate-limited (HTTP 429); retry later"),
    (r"unable to download webpage|name or service not known|temporary failure|timed out|connection", "network error; retry later"),
]


@dataclass(frozen=True)
class DownloadOptions:
    """How to fetch source videos. Defaults are polite: one stream, 1 MB/s, pauses, retries."""

    out_dir: Path
    url_template: str = YOUTUBE_URL
    format: str = DEFAULT_FORMAT
    retries: int = 10
    rate_limit: int | None = 1_000_000  # bytes per second
    sleep_interval: float = 2.0  # seconds to wait before each download
    cookies: Path | None = None
    socket_timeout: float = 30.0

    @classmethod
    def from_dict(cls, params: dict, default_dir: Path) -> DownloadOptions:
        known = {"dir", "url_template", "format", "retries", "rate_limit", "sleep_interval",
                 "cookies", "socket_timeout", "enabled"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"download: unknown key(s) {unknown}; known: {sorted(known)}")
        cookies = params.get("cookies")
        if cookies is not None and not Path(cookies).is_file():
            raise ValueError(f"download.cookies: cookies file {cookies} does not exist")
        template = params.get("url_template", YOUTUBE_URL)
        if "{id}" not in template:
            raise ValueError(f"download.url_template {template!r} must contain {{id}}")
        return cls(
            out_dir=Path(params.get("dir") or default_dir),
            url_template=template,
            format=params.get("format", DEFAULT_FORMAT),
            retries=int(params.get("retries", 10)),
            rate_limit=params.get("rate_limit", 1_000_000),
            sleep_interval=float(params.get("sleep_interval", 2.0)),
            cookies=Path(cookies) if cookies else None,
            socket_timeout=float(params.get("socket_timeout", 30.0)),
        )


@dataclass(frozen=True)
class DownloadResult:
    """``path`` of the downloaded video, or ``None`` and the ``reason`` it could not be had."""

    path: Path | None
    reason: str = ""


def classify_error(message: str) -> str:
    """Turn a yt-dlp error message into a short reason for the availability report."""
    text = message.lower()
    for pattern, reason in _REASONS:
        if re.search(pattern, text):
            return reason
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return f"download failed: {first[:200]}"


def downloaded_file(out_dir: Path, video_id: str) -> Path | None:
    """A finished download of ``video_id`` in ``out_dir`` (partial ``.part`` files excluded)."""
    for ext in VIDEO_EXTENSIONS:
        path = out_dir / f"{video_id}{ext}"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def ydl_params(video_id: str, options: DownloadOptions) -> dict:
    """The yt-dlp options for one video (public so the tests can check what production uses)."""
    import imageio_ffmpeg

    params = {
        "format": options.format,
        "outtmpl": str(options.out_dir / f"{video_id}.%(ext)s"),
        "continuedl": True,  # resume a .part file left by an interrupted run
        "nopart": False,
        "retries": options.retries,
        "fragment_retries": options.retries,
        "extractor_retries": min(options.retries, 3),
        "socket_timeout": options.socket_timeout,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),
        # file:// sources are how a local mirror (and the tests) stand in for the network.
        "enable_file_urls": options.url_template.startswith("file:"),
    }
    if options.rate_limit:
        params["ratelimit"] = int(options.rate_limit)
    if options.cookies:
        params["cookiefile"] = str(options.cookies)
    return params


def download_video(
    video_id: str,
    options: DownloadOptions,
    ydl_factory: Callable[[dict], object] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Download ``video_id`` into ``options.out_dir`` with yt-dlp, or say why it cannot be had.

    ``ydl_factory`` builds the downloader from its options (default ``yt_dlp.YoutubeDL``);
    tests may inject another, production always uses yt-dlp.
    """
    done = downloaded_file(options.out_dir, video_id)
    if done is not None:
        return DownloadResult(done)
    if ydl_factory is None:
        import yt_dlp

        ydl_factory = yt_dlp.YoutubeDL
    from yt_dlp.utils import DownloadError

    options.out_dir.mkdir(parents=True, exist_ok=True)
    if options.sleep_interval > 0:
        sleep(options.sleep_interval)
    url = options.url_template.format(id=video_id)
    try:
        with ydl_factory(ydl_params(video_id, options)) as ydl:
            ydl.download([url])
    except DownloadError as exc:
        return DownloadResult(None, classify_error(str(exc)))
    done = downloaded_file(options.out_dir, video_id)
    if done is None:
        return DownloadResult(None, f"download failed: yt-dlp wrote no file for {url}")
    return DownloadResult(done)


def remove_partial(out_dir: Path, video_id: str) -> None:
    """Delete leftover ``.part``/``.ytdl`` files of ``video_id`` (after a permanent failure)."""
    for path in out_dir.glob(f"{video_id}.*"):
        if path.suffix in (".part", ".ytdl") or path.name.endswith(".part"):
            os.remove(path)
