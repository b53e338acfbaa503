"""TaiChiHD: 3,334 chunks (3,049 train / 285 test) of tai-chi videos from 280 YouTube ids, 256x256.

The metadata table is the one published with the video-preprocessing repository, fetched from a
URL pinned to its commit and checked by SHA-256.
"""

from __future__ import annotations

from data_prep.metadata import METADATA_COMMIT
from data_prep.video_dataset import VideoDatasetSpec, register_video_dataset

METADATA_URL = (
    "https://raw.githubusercontent.com/AliaksandrSiarohin/video-preprocessing/"
    f"{METADATA_COMMIT}/taichi-metadata.csv"
)

SPEC = register_video_dataset(VideoDatasetSpec(
    name="taichi",
    size=(256, 256),
    metadata_url=METADATA_URL,
    metadata_sha256="1f9dcf5af96c1eb7aceb9afdf796f81668a0f8d8fc58c910369dedaab04fe12f",
    protocol_counts={"train": 3049, "test": 285},
))
