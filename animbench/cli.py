"""The animbench command: one subcommand per pipeline step.

The Snakemake rules call these subcommands; each is a thin wrapper around one package function,
so every step also runs, and can be debugged, without Snakemake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from animbench.workflow_config import load_workflow_config

if TYPE_CHECKING:
    from methods.engine.releases import ResolvedCheckpoint

REPO = Path(__file__).resolve().parents[1]


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _display_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (reports stay portable)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _device(name: str) -> str:
    """``auto`` -> CUDA when present, else CPU; a device that is not there is a one-line error."""
    from data_prep.devices import resolve_device

    return str(resolve_device(name))


def cmd_prepare(args: argparse.Namespace) -> None:
    from data_prep.datasets import prepare_dataset

    path = prepare_dataset(args.dataset, args.params, Path(args.out))
    print(f"dataset {args.dataset} ready at {path}")


def cmd_train(args: argparse.Namespace) -> None:
    from methods.engine.config import load_method_config
    from methods.engine.train import TrainOptions, train

    _threads(args.threads)
    config = load_method_config(args.method_config, overrides=args.overrides)
    options = TrainOptions(
        dataset_root=Path(args.dataset),
        out_dir=Path(args.out),
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        config_source=_display_path(args.method_config),
        weights_dir=Path(args.weights_dir),
    )
    print(f"checkpoint written to {train(config, options)}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from data_prep.devices import resolve_device
    from methods.engine.checkpoints import load_model
    from methods.engine.reconstruct import reconstruct_dataset

    _threads(args.threads)
    resolved = _resolve_checkpoint(args)
    config = _checkpoint_config(resolved.release, args.method_config, args.overrides)
    device = resolve_device(args.device)
    model, payload = load_model(resolved.path, config)
    config = config or payload["animbench"]["config"]
    height, width = config["dataset_params"]["frame_shape"][:2]
    index = reconstruct_dataset(
        model.to(device), resolved.path, Path(args.dataset), Path(args.out), (height, width),
        batch_size=args.batch_size, progress=not args.no_progress, device=device,
        checkpoint_sha256=resolved.sha256,
        source={**resolved.record(), "method_config": _config_source(resolved.release, args.method_config),
                "overrides": args.overrides},
    )
    # The report index reads the device of every job from its log.
    print(f"reconstructions indexed in {index} (device {device})")


def _resolve_checkpoint(args: argparse.Namespace) -> ResolvedCheckpoint:
    """The checkpoint of ``--checkpoint``/``--release`` (:func:`_checkpoint_arguments`). Size and
    digest are checked before anything reads the file (a release: against the published or
    locked digest); then it is loaded as tensors and plain data only."""
    from methods.engine.releases import resolve_checkpoint

    if args.release is None and args.checkpoint is None:
        raise ValueError("give --checkpoint (a file or a released checkpoint's name) or --release")
    resolved = resolve_checkpoint(args.release or args.checkpoint, args.weights_dir)
    if args.release and args.checkpoint and Path(args.checkpoint).resolve() != resolved.path.resolve():
        raise ValueError(f"--checkpoint {args.checkpoint} is not release {args.release}'s file {resolved.path}")
    return resolved


def _config_source(release: str | None, method_config: str | None) -> str:
    from methods.engine.releases import RELEASES

    if method_config:
        return _display_path(method_config)
    return f"{RELEASES[release].config} (the release's)" if release else "carried by the checkpoint"


def _checkpoint_config(release: str | None, method_config: str | None, overrides: dict) -> dict | None:
    """The method config of a checkpoint: a release's (ours for its dataset, its align_corners),
    ``--method-config``, or None (our checkpoints carry theirs); ``--overrides`` over it."""
    from methods.engine.config import load_method_config
    from methods.engine.releases import release_method_config

    if release:
        return release_method_config(release, REPO, overrides, method_config)
    if method_config:
        return load_method_config(method_config, overrides=overrides)
    if overrides:
        raise ValueError("--overrides needs --method-config or --release (a checkpoint's own config is used as is)")
    return None


def cmd_train_avd(args: argparse.Namespace) -> None:
    from methods.engine.config import load_method_config
    from methods.engine.train_avd import AVDOptions, train_avd

    _threads(args.threads)
    checkpoint = Path(args.checkpoint)
    options = AVDOptions(
        checkpoint=checkpoint,
        dataset_root=Path(args.dataset),
        out=Path(args.out) if args.out else checkpoint.with_name("checkpoint_avd.pt"),
        params=args.params,
        method_config=load_method_config(args.method_config) if args.method_config else None,
        seed=args.seed,
        device=_device(args.device),
        progress=not args.no_progress,
    )
    print(f"checkpoint with avd_network written to {train_avd(options)}")


def cmd_animate(args: argparse.Namespace) -> None:
    from methods.engine.animate import animate_file

    _threads(args.threads)
    # A release's AVD network drives mode avd.
    resolved = _resolve_checkpoint(args)
    count = animate_file(
        resolved.path, args.source, args.driving, args.out, mode=args.mode,
        method_config=_checkpoint_config(resolved.release, args.method_config, args.overrides),
        device=_device(args.device), batch_size=args.batch_size,
        adapt_movement_scale=False if args.no_adapt_scale else None, progress=not args.no_progress,
    )
    print(f"{count} frames written to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from metrics.evaluate import evaluate_reconstructions, write_metrics

    _threads(args.threads)
    # Defaults follow the results layout: {results}/{dataset}/{run}/metrics.csv.
    dataset_results = Path(args.out).resolve().parent.parent
    evaluation = evaluate_reconstructions(
        Path(args.reconstruction), Path(args.dataset), args.protocol, progress=not args.no_progress,
        device=_device(args.device), weights_dir=Path(args.weights_dir), batch_size=args.batch_size,
        evaluators_dir=Path(args.evaluators_dir) if args.evaluators_dir else dataset_results / "evaluators",
        gt_cache_dir=Path(args.gt_cache) if args.gt_cache else dataset_results / "gt_cache",
    )
    write_metrics(evaluation, Path(args.out))
    print(f"{len(evaluation.table)} frames measured into {args.out}")


def cmd_train_evaluators(args: argparse.Namespace) -> None:
    from metrics.protocols import get_protocol
    from metrics.train_evaluators import train_evaluators

    _threads(args.threads)
    protocol = get_protocol(args.protocol)
    if protocol.trained_evaluators is None:
        raise ValueError(f"protocol {args.protocol!r} has no trained_evaluators section (metrics/protocols.yaml)")
    record = train_evaluators(Path(args.dataset), Path(args.out), protocol.trained_evaluators, progress=not args.no_progress)
    for kind in ("keypoint", "identity"):
        print(f"{kind} evaluator: " + ", ".join(f"{k}={v}" for k, v in sorted(record[kind].items()) if k != "targets"))


def cmd_baseline(args: argparse.Namespace) -> None:
    if args.kind == "update":
        from reports.regression import baseline_path, collect, write_baseline

        config = load_workflow_config([Path(p) for p in args.config], REPO)
        out = Path(args.out) if args.out else baseline_path(config, REPO)
        table = collect(config, Path(args.root))
        checked = table[["dataset", "run", "metric"]].drop_duplicates()
        print(f"baseline of {len(checked)} metrics ({len(table)} per-video values) written to "
              f"{_display_path(str(write_baseline(table, out)))}")
        return
    if not (args.dataset and args.out):
        raise ValueError("baseline no-motion needs --dataset and --out")
    from metrics.baseline import no_motion_reconstruction

    print(f"no-motion baseline indexed in {no_motion_reconstruction(Path(args.dataset), Path(args.out), progress=not args.no_progress)}")


#: The pages `animbench report` renders.
REPORTS = ("table1", "table2", "compare", "regression", "index")


def cmd_report(args: argparse.Namespace) -> int:
    if args.table not in REPORTS:
        raise ValueError(f"unknown report {args.table!r}; available: {', '.join(REPORTS)}")
    if args.config_json is not None:
        config, name = args.config_json, args.config_name or "config passed as JSON"
    else:
        config, name = load_workflow_config([Path(args.config)], REPO), args.config
    if args.table == "regression":
        from data_prep.io import write_text
        from reports.regression import render_regression, summary_line

        out, comparison = render_regression(config, Path(args.out), REPO, Path(args.root), config_name=name)
        regressed = bool(comparison["regressed"].any())
        print(f"{summary_line(comparison)}; page written to {out}")
        if args.verdict:
            # For the workflow: the page is kept either way, and the verdict decides its exit.
            write_text(Path(args.verdict), f"{'regressed' if regressed else 'passed'}: {summary_line(comparison)}; page {out}\n")
        # Non-zero exit when a metric regressed: CI and `snakemake reports/regression.html` fail.
        return 1 if regressed else 0
    if args.table == "index":
        from reports.index import render_index

        out = render_index(config, Path(args.out), REPO, Path(args.root), config_name=name)
    elif args.table == "compare":
        from reports.compare import render_compare

        out = render_compare(config, Path(args.out), REPO, config_name=name)
    elif args.table == "table2":
        from reports.table2 import render_table2

        out = render_table2(config, Path(args.out), REPO, config_name=name)
    else:
        from reports.table1 import render_table1

        out = render_table1(config, Path(args.out), REPO, config_name=name)
    print(f"report written to {out}")
    return 0


def cmd_dataset(args: argparse.Namespace) -> None:
    """The stages of a YouTube dataset, one Snakemake job each (``prepare`` runs them all)."""
    from data_prep.video_dataset import (
        VideoParams,
        assemble,
        fetch_metadata,
        forget_transient,
        get_spec,
        prepare_metadata,
        prepare_video,
    )

    spec = get_spec(args.dataset)
    params = VideoParams.from_dict(args.params)
    root = Path(args.root)
    if args.stage == "fetch":
        print(fetch_metadata(spec, params))
    elif args.stage == "metadata":
        chunks = prepare_metadata(spec, params, root)
        print(f"{spec.name}: {len(chunks)} valid chunks in {root}")
    elif args.stage == "video":
        if not args.video:
            raise ValueError("stage video needs --video YOUTUBE_ID")
        print(prepare_video(spec, params, root, args.video))
    elif args.stage == "retry":
        removed = forget_transient(root)
        print(f"{len(removed)} video(s) will be retried by the next run: {' '.join(removed)}")
    else:
        print(assemble(spec, root))


def cmd_weights(args: argparse.Namespace) -> None:
    from data_prep import weights

    names = args.names or weights.list_weights()
    for name in names:
        weights.REGISTRY.get(name)  # an unknown name is a KeyError before anything is downloaded
    if args.action == "list":
        for name in names:
            e = weights.REGISTRY[name]
            size = f"{e.size} B" if e.size else "size unknown"
            where = e.url + (f" : {e.remote_path}" if e.remote_path else "")
            mirror = f"\n{'':30s} mirror: {e.mirror}" if e.mirror else ""
            print(f"{e.name:30s} {weights.checksum_kind(e):14s} {size:16s} {e.filename}\n{'':30s} {where}{mirror}")
        return
    failed = []
    for name in names:
        if args.action == "fetch":
            try:
                print(f"ok          {name}: {weights.fetch(name, args.dir)}")
            except weights.WeightsFetchError as err:
                print(f"failed      {name}: {err}", file=sys.stderr)
                failed.append(name)
        elif args.action == "lock":
            try:
                print(weights.lock(name, args.dir))
            except weights.MissingWeightsError as err:
                print(f"failed      {name}: {err}", file=sys.stderr)
                failed.append(name)
        else:
            line = weights.check(name, args.dir)
            print(line, file=sys.stderr if line.startswith(("missing", "corrupt")) else sys.stdout)
            if line.startswith(("missing", "corrupt")):
                failed.append(name)
    if failed:
        verb = {"fetch": "could not be fetched", "lock": "could not be locked"}.get(args.action, "are missing or corrupt")
        raise weights.MissingWeightsError(
            f"{len(failed)} of {len(names)} weights files {verb}: {', '.join(failed)}"
            + ("" if args.action == "fetch" else f"; fetch with `animbench weights fetch {' '.join(failed)} --dir {args.dir}`")
        )


def _checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """What a command that loads a checkpoint takes (read by :func:`_resolve_checkpoint`)."""
    p.add_argument("--checkpoint", default=None,
                   help="ours, a released checkpoint's name (`animbench weights list`), or a file (with --method-config)")
    p.add_argument("--release", default=None,
                   help="a released checkpoint's name: its file in --weights-dir, digest checked, and its config")
    p.add_argument("--method-config", default=None, help="config of a checkpoint that carries none")
    p.add_argument("--overrides", type=_json, default={}, help="JSON of dotted keys over the method config")
    p.add_argument("--weights-dir", default="resources/weights", help="where released checkpoints are")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animbench", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, threads: bool = False) -> None:
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if threads:
            p.add_argument("--threads", type=int, default=None, help="torch CPU threads")

    p = sub.add_parser("prepare", help="build a dataset into its on-disk form")
    p.add_argument("dataset", help="dataset builder name, e.g. synthetic")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--params", type=_json, default={}, help="builder parameters as a JSON object")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "dataset",
        help="one stage of a YouTube dataset (fetch, metadata, video, assemble, retry: forget "
        "rate-limited/network failures); `prepare` runs them all in one process",
    )
    p.add_argument("stage", choices=["fetch", "metadata", "video", "assemble", "retry"])
    p.add_argument("dataset", help="a video dataset: taichi, vox or ted")
    p.add_argument("--params", type=_json, default={}, help="builder parameters as a JSON object")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--video", help="YouTube id (stage video)")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("train", help="train a method (resumes an interrupted run)")
    p.add_argument("--method-config", required=True, help="methods/configs/{method}/{dataset}.yaml")
    p.add_argument("--overrides", type=_json, default={}, help='JSON of dotted keys, e.g. {"train_params.num_epochs": 2}')
    p.add_argument("--dataset", required=True, help="prepared dataset folder")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, train_log.csv, run.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--weights-dir", default="resources/weights", help="pretrained weights folder")
    common(p, threads=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reconstruct", help="reconstruct every test video from its first frame")
    _checkpoint_arguments(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True, help="folder of stacked PNGs + index.csv")
    p.add_argument("--batch-size", type=int, default=None,
                   help="driving frames per call (default: by frame size and device, methods.engine.reconstruct.PIXELS_PER_CALL)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    common(p, threads=True)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("train-avd", help="train the AVD network of a trained checkpoint (resumable)")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (ours, or a released one with --method-config)")
    p.add_argument("--method-config", default=None, help="config of a checkpoint that carries none")
    p.add_argument("--dataset", required=True, help="prepared dataset folder (its train split is used)")
    p.add_argument("--out", default=None, help="output checkpoint (default: checkpoint_avd.pt beside --checkpoint)")
    p.add_argument("--params", type=_json, default={}, help='train_avd_params overrides as JSON, e.g. {"num_epochs": 2}')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    common(p, threads=True)
    p.set_defaults(func=cmd_train_avd)

    p = sub.add_parser("animate", help="animate a source image by a driving video")
    _checkpoint_arguments(p)
    p.add_argument("--source", required=True, help="source image (centre-cropped to a square, resized to the model's frame_shape)")
    p.add_argument("--driving", required=True, help="driving video (mp4, gif, ... or a folder of 0000000.png frames)")
    p.add_argument("--mode", choices=["standard", "relative", "avd"], default="relative")
    p.add_argument("--out", required=True, help="output .mp4, .gif, or a folder (PNG frames)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8, help="driving frames per forward pass")
    p.add_argument("--no-adapt-scale", action="store_true", help="relative mode: do not rescale movement by keypoint-hull areas")
    common(p, threads=True)
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("evaluate", help="per-frame metrics of a reconstruction folder")
    p.add_argument("--reconstruction", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--protocol", required=True, help="evaluation protocol (metrics/protocols.yaml), e.g. synthetic")
    p.add_argument("--out", required=True, help="metrics.csv ({results}/{dataset}/{run}/metrics.csv; metrics.json beside it)")
    p.add_argument("--device", default="auto", help="device of the evaluators: auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="frames per evaluator call")
    p.add_argument("--weights-dir", default="resources/weights", help="pretrained evaluator weights")
    p.add_argument("--evaluators-dir", default=None, help="evaluators trained in the DAG; default {results}/{dataset}/evaluators")
    p.add_argument("--gt-cache", default=None, help="ground-truth detections cache; default {results}/{dataset}/gt_cache")
    common(p, threads=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train-evaluators", help="train and validate the synthetic dataset's keypoint and identity evaluators")
    p.add_argument("--dataset", required=True, help="prepared synthetic dataset (with ground_truth.csv)")
    p.add_argument("--out", required=True, help="folder for keypoints.pt, identity.pt, validation.json")
    p.add_argument("--protocol", default="synthetic", help="protocol whose trained_evaluators settings apply")
    common(p, threads=True)
    p.set_defaults(func=cmd_train_evaluators)

    p = sub.add_parser(
        "baseline",
        help="no-motion: write the no-motion reconstruction (frame 0 everywhere); "
        "update: store this run's per-video metric values as the regression baseline",
    )
    p.add_argument("kind", choices=["no-motion", "update"])
    p.add_argument("--dataset", default=None, help="no-motion: prepared dataset")
    p.add_argument("--out", default=None, help="no-motion: {results}/{dataset}/no-motion/reconstruction; "
                   "update: default workflow/baselines/{regression.baseline}.csv")
    p.add_argument("--config", nargs="*", default=[], help="update: workflow config files merged over default.yaml")
    p.add_argument("--root", default=".", help="update: the folder the workflow ran in")
    common(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("report", help="render an HTML report")
    p.add_argument("table", help="table1, table2 (ablations), compare (pairwise, beyond noise?), "
                   "regression (exits 1 when a metric regressed) or index")
    p.add_argument("--root", default=".", help="regression, index: the folder the workflow ran in")
    p.add_argument("--config", default=str(REPO / "workflow/config/default.yaml"), help="workflow config YAML")
    p.add_argument("--config-json", type=_json, default=None, help="the workflow config as JSON (Snakemake passes it)")
    p.add_argument("--config-name", default=None, help="config file names shown in the report")
    p.add_argument("--verdict", default=None, help="regression: also write the verdict line to this file")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "weights",
        help="list, check or fetch pretrained weights and released checkpoints; lock: record the "
        "digest of a file whose upstream publishes none (placed by hand)",
    )
    p.add_argument("action", choices=["list", "check", "fetch", "lock"])
    p.add_argument("names", nargs="*")
    p.add_argument("--dir", default="resources/weights")
    p.set_defaults(func=cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = args.func(args)
    except (OSError, ValueError, KeyError) as err:
        # Known failure modes (missing file, bad config, corrupt input) end with one clear line.
        print(f"animbench {args.command}: error: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        # Failures a user can act on (methods.engine.train.TrainingError: divergence, pre-emption)
        # carry their exit status; any other RuntimeError is a bug and keeps its traceback.
        code = getattr(err, "exit_code", None)
        if code is None:
            raise
        print(f"animbench {args.command}: error: {err}", file=sys.stderr)
        return int(code)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
