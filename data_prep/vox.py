"""VoxCeleb (FOMM's 256x256 crops): 20,075 chunks (19,550 train / 525 test) from 3,442 YouTube ids.

Chunk names carry the speaker: ``person_id#video_id#start#end``. The counts are those of the
published metadata table, which the protocol follows; they differ slightly from the numbers in
the FOMM paper's text (the availability summary states the table's counts).
"""

from __future__ import annotations

from data_prep.taichi import METADATA_COMMIT
from data_prep.video_dataset import VideoDatasetSpec, register_video_dataset

METADATA_URL = (
    "https://raw.githubusercontent.com/AliaksandrSiarohin/video-preprocessing/"
    f"{METADATA_COMMIT}/vox-metadata.csv"
)

SPEC = register_video_dataset(VideoDatasetSpec(
    name="vox",
    size=(256, 256),
    metadata_url=METADATA_URL,
    metadata_sha256="dfbaf55a6edaaf84add29f93692f8bb7289aff1102631bcdf1b1aaf52f3953f7",
    require_person_id=True,
    protocol_counts={"train": 19550, "test": 525},
))
