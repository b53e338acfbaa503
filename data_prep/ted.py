"""TED-talks (MRAA): upper-body crops at 384x384.

Which table: the MRAA repository's ``data/ted-metadata.csv`` is known to be wrong (``start`` and
``end`` all 0 with the frame range folded into ``video_id``, every row ``train``). Its authors
posted the corrected ``ted384-metadata.csv`` in the repository's issue tracker
(snap-research/articulated-animation, issue #12). That corrected table is what this project
uses. It has no stable download URL, so the user passes it with ``params.metadata``; the project
then checks it (:func:`check_table`): the published wrong table is refused by its SHA-256 and by
its content (no valid row, no ``test`` partition), and the SHA-256 of the table actually used is
recorded in ``metadata_source.json`` so runs can be compared.

Chunk names follow the reference preparation script: a ``video_id`` of ``#``-separated parts
(``<youtube id>#a#b``) appears with its parts reversed (``b#a#<youtube id>#start#end``), so
preprocessed copies made with it are found; the download uses the YouTube id before the first
``#``.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.io import file_sha256
from data_prep.metadata import BadRow, Chunk, MetadataError
from data_prep.video_dataset import VideoDatasetSpec, register_video_dataset

#: SHA-256 of ``data/ted-metadata.csv`` in snap-research/articulated-animation at commit
#: 03f1968bb1be1b0d39e4818db1e39cd969adc033: the published table with the known errors.
KNOWN_BAD_SHA256 = {"9d1cf428c9619ffd2b440edaf578569e774b157835c2b9e2f3bffac00c620001"}

HELP = (
    "TED-talks needs the corrected ted384-metadata.csv posted in the MRAA issue tracker "
    "(github.com/snap-research/articulated-animation/issues/12); download it and set "
    "datasets.ted.params.metadata to its path. The repository's data/ted-metadata.csv is wrong "
    "(start/end all 0, all train) and is refused."
)


def check_table(path: Path, chunks: list[Chunk], bad: list[BadRow]) -> None:
    """Refuse the known-wrong published TED table, and any table without a test split."""
    if file_sha256(path) in KNOWN_BAD_SHA256:
        raise MetadataError(f"{path} is the MRAA repository's ted-metadata.csv, known to be wrong. {HELP}")
    zero = sum("start 0 is not before end 0" in b.reason for b in bad)
    if bad and zero == len(bad) and not chunks:
        raise MetadataError(f"{path}: every row has start = end = 0 (the wrong published table). {HELP}")
    if chunks and not any(c.partition == "test" for c in chunks):
        raise MetadataError(f"{path}: no row is in the test partition. {HELP}")


SPEC = register_video_dataset(VideoDatasetSpec(
    name="ted",
    size=(384, 384),
    metadata_url=None,
    metadata_sha256=None,
    check_table=check_table,
    metadata_help=HELP,
))
