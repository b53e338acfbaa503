"""Why a source video cannot be (fully) decoded, in one line a report can show.

Two causes are told apart: ffmpeg's own reason (``moov atom not found``, ``Invalid data found
when processing input``...), kept whole rather than only the first line of imageio-ffmpeg's
message (which is "Could not load meta information"), and a *truncated* file: an MP4/MOV/M4V
whose last top-level box declares more bytes than the file holds, as an interrupted download
leaves it. A truncated file is reported as such, not as a corrupt file nor as a short video.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

#: Lines of ffmpeg's stderr that say nothing about this file (its banner, build, progress).
_NOISE = re.compile(r"^(ffmpeg version|built with|configuration:|lib\w+\s+\d|frame=|Input #|Stream #|"
                    r"Duration:|Metadata:|major_brand|minor_version|compatible_brands|encoder\s*:|"
                    r"Press \[q\]|=== stderr ===)")
_ADDRESS = re.compile(r" @ 0x[0-9a-f]+")
MAX_REASON = 600
#: The ISO base media (MP4) container extensions whose box structure is checked.
MP4_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp")


def ffmpeg_reason(message: str) -> str:
    """The informative lines of an imageio-ffmpeg error (its summary + ffmpeg's stderr), joined
    with "; ", de-duplicated, addresses dropped, at most ``MAX_REASON`` characters."""
    seen: list[str] = []
    for raw in str(message).splitlines():
        line = _ADDRESS.sub("", raw.strip())
        if not line or _NOISE.match(line) or line in seen:
            continue
        seen.append(line)
    text = "; ".join(seen) or "no reason given by ffmpeg"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def mp4_truncation(path: str | os.PathLike) -> str:
    """``""`` unless ``path`` is an MP4-family file cut short: then why (which box, how many
    bytes it declares, how many the file has)."""
    path = Path(path)
    if path.suffix.lower() not in MP4_SUFFIXES or not path.is_file():
        return ""
    size = path.stat().st_size
    offset = 0
    with open(path, "rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(16)
            if len(header) < 8:
                return f"truncated: the file ends {size - offset} bytes into a box header at byte {offset}"
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1:  # 64-bit size follows the type
                if len(header) < 16:
                    return f"truncated: the file ends inside a box header at byte {offset}"
                length = struct.unpack(">Q", header[8:16])[0]
            elif length == 0:  # "extends to the end of the file": cannot be cut short by itself
                return ""
            if length < 8 or not kind.isascii():
                return ""  # not a box structure we can follow: leave the verdict to ffmpeg
            if offset + length > size:
                name = kind.decode("ascii", "replace")
                return (f"truncated: its '{name}' box at byte {offset} declares {length} bytes but "
                        f"the file ends {size - offset} bytes into it ({size} bytes in all; an "
                        "interrupted download?)")
            offset += length
    return ""


def decode_failure(path: str | os.PathLike, message: str) -> str:
    """The reason to record for a video ffmpeg could not decode: truncation when the container
    shows it, else ffmpeg's own reason."""
    return mp4_truncation(path) or ffmpeg_reason(message)
