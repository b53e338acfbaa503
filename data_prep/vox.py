"""VoxCeleb (FOMM's 256x256 crops) from the published table: 20,075 rows from 3,442 YouTube ids.

Chunk names carry the speaker: ``person_id#video_id#start#end``. The table has 19,550 train and
525 test rows, but 308 train rows repeat an earlier row exactly and 3 test rows list a chunk that
is also a train row of a video whose first row is train; the reference preparation takes a
video's partition from its first row and writes a chunk once, so 19,242 distinct train chunks and
522 test chunks exist on disk (the availability report's denominators). Also in the table
(warnings): 866 rows whose bbox reaches past the frame's edge (clipped, as the reference's
slicing does). The FOMM paper's text gives yet other split sizes.
"""

from __future__ import annotations

from data_prep.metadata import METADATA_COMMIT
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
    protocol_counts={"train": 19242, "test": 522},
))
