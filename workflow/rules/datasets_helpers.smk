# Helpers of the real video dataset rules (datasets.smk). Kept apart from common.smk, which
# holds the helpers every rule file shares.
import csv
import re

from data_prep.video_dataset import list_video_datasets

VIDEO_BUILDERS = tuple(list_video_datasets())
METADATA_DIR = "resources/metadata"


def video_datasets():
    return [n for n, d in config["datasets"].items() if d["builder"] in VIDEO_BUILDERS]


def _one_of(names):
    # A constraint that matches nothing when the config has no video dataset.
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def video_builder(wildcards):
    return config["datasets"][wildcards.dataset]["builder"]


def video_metadata(wildcards):
    """The user's table when params.metadata names one, else the fetched official table."""
    params = config["datasets"][wildcards.dataset].get("params", {})
    if params.get("metadata"):
        return params["metadata"]
    return f"{METADATA_DIR}/{video_builder(wildcards)}-metadata.csv"


def video_params(wildcards):
    return _video_params_json(wildcards.dataset)


def _video_params_json(dataset, metadata=None):
    params = dict(config["datasets"][dataset].get("params", {}))
    params.setdefault("progress", False)
    if metadata is not None:
        params["metadata"] = metadata
    return json.dumps(params)


def video_status_files(wildcards):
    """One status file per YouTube id of the checkpoint's chunks.csv."""
    chunks = checkpoints.video_chunks.get(dataset=wildcards.dataset).output.chunks
    with open(chunks, newline="") as handle:
        ids = sorted({row["video_id"].split("#", 1)[0] for row in csv.DictReader(handle)})
    return [f"{DATASETS_DIR}/{wildcards.dataset}/.status/{i}.csv" for i in ids]
