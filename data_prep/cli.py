"""``python -m data_prep.cli``: the stages of a YouTube dataset, one Snakemake job each.

    python -m data_prep.cli metadata taichi --params '{...}' --root DIR
    python -m data_prep.cli video    taichi --params '{...}' --root DIR --video YOUTUBE_ID
    python -m data_prep.cli assemble taichi --params '{...}' --root DIR
    python -m data_prep.cli retry    taichi --root DIR   # forget rate-limited/network failures

``animbench prepare taichi`` runs all three in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_prep.metadata import MetadataError
from data_prep.video_dataset import (
    VideoParams,
    assemble,
    fetch_metadata,
    forget_transient,
    get_spec,
    prepare_metadata,
    prepare_video,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["fetch", "metadata", "video", "assemble", "retry"])
    parser.add_argument("dataset", help="taichi, vox or ted")
    parser.add_argument("--params", default="{}", help="builder params as JSON")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--video", help="YouTube id (stage video)")
    args = parser.parse_args(argv)
    try:
        spec = get_spec(args.dataset)
        params = VideoParams.from_dict(json.loads(args.params))
        root = Path(args.root)
        if args.stage == "fetch":
            print(fetch_metadata(spec, params))
        elif args.stage == "metadata":
            chunks = prepare_metadata(spec, params, root)
            print(f"{spec.name}: {len(chunks)} valid chunks in {root}")
        elif args.stage == "video":
            if not args.video:
                parser.error("stage video needs --video")
            print(prepare_video(spec, params, root, args.video))
        elif args.stage == "retry":
            removed = forget_transient(root)
            print(f"{len(removed)} video(s) will be retried by the next run: {' '.join(removed)}")
        else:
            print(assemble(spec, root))
    except (MetadataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
