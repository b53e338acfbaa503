"""How often does the regression check cry wolf, and how small a degradation does it catch?

Run: ``python tests/benchmarks/bench_regression.py [--reseeds 4] [--work DIR]`` from the repo
root (about four minutes of CPU per set of three seeds on 2 cores). Against the committed baseline
of the tiny config (``workflow/baselines/tiny.csv``: FOMM, MRAA, TPSMM and CPAB, each trained with
seeds 0, 1 and 2, as the config says):

1. **Bit-identical rerun**: the tiny DAG again; on the machine that wrote the baseline every
   metric must come out ``identical`` (elsewhere float rounding may make it ``within noise``;
   never ``worse``).
2. **False alarms**: the tiny DAG with other seeds (3-5, 6-8, ...: no code change, only other
   random streams); every metric check that says ``worse`` is a false alarm. Target: <= 5 %.
3. **Detection**: the reconstructions of part 1 degraded on purpose, measured again and checked:
   every pixel's error to the ground truth scaled by 1.02 ... 1.10 (L1 rises by 2 ... 10 %),
   stochastically rounded back to 8 bits,
   a Gaussian blur of sigma 0.5 and 1 px and a 1-px shift (what these do to L1 depends on the
   model: blurring an already blurry reconstruction can lower it). It prints each degradation's
   L1 rise and how many of the four runs the check flags ``worse``. Target: every check of an
   L1 rise >= 5 % flagged.

It prints one table per part and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from animbench.workflow_config import load_workflow_config  # noqa: E402
from data_prep.video import read_stacked_png, read_video, write_stacked_png  # noqa: E402
from metrics.evaluate import evaluate_reconstructions, write_metrics  # noqa: E402
from reports.regression import check as regression_check  # noqa: E402
from reports.regression import settings  # noqa: E402
from reports.seeds import members  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "workflow/config/tiny.yaml"
FALSE_ALARM_TARGET = 0.05
DETECT_AT = 0.05  # relative L1 rise the check must flag
BASELINE_SEEDS = [0, 1, 2]  # the tiny config's


def run_tiny(root: Path, seeds: list[int], config: Path = TINY) -> Path:
    """The tiny DAG's metrics with every run trained with ``seeds``, in ``root`` (resumes if
    already there)."""
    root.mkdir(parents=True, exist_ok=True)
    base = load_workflow_config([config], REPO)
    override = root / "seeds.yaml"
    override.write_text(yaml.safe_dump({"runs": {r: {"seeds": list(seeds)} for r in settings(base)["runs"]}}))
    loaded = load_workflow_config([config, override], REPO)
    targets = [f"results/{d}/{m}/metrics.csv" for d in settings(loaded)["datasets"]
               for r in settings(loaded)["runs"] for m in members(loaded, r)]
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake if snakemake.exists() else "snakemake"), "--snakefile", str(REPO / "Snakefile"),
               *targets, "--cores", "2", "--quiet", "--configfile", str(config), str(override)]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tiny DAG with seeds {seeds} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return root


def check(root: Path, config: Path = TINY) -> pd.DataFrame:
    """The regression check's comparison of the results in ``root`` with the committed baseline
    (with the seeds ``root`` was trained with, when :func:`run_tiny` wrote it)."""
    seeds = root / "seeds.yaml"
    loaded = load_workflow_config([config, seeds] if seeds.is_file() else [config], REPO)
    return regression_check(loaded, root, REPO)


Degradation = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _blur(sigma: float) -> Degradation:
    return lambda frames, truth: ndimage.gaussian_filter(frames, sigma=(0, sigma, sigma, 0), mode="nearest")


def _shift(frames: np.ndarray, truth: np.ndarray) -> np.ndarray:
    # One pixel right, the first column repeated (what a misaligned warp looks like).
    return np.concatenate([frames[:, :, :1], frames[:, :, :-1]], axis=2)


def _error(scale: float) -> Degradation:
    # Every pixel's error to the ground truth scaled by 1 + scale: L1 rises by `scale` (in
    # expectation over the stochastic rounding to 8 bits; up to clipping at 0 and 255).
    return lambda frames, truth: frames + scale * (frames - truth)


#: name -> what it does to a (T, H, W, 3) float video in [0, 255], given its ground truth
DEGRADATIONS: dict[str, Degradation] = {
    "error x1.02": _error(0.02),
    "error x1.03": _error(0.03),
    "error x1.04": _error(0.04),
    "error x1.05": _error(0.05),
    "error x1.10": _error(0.10),
    "blur 0.5 px": _blur(0.5),
    "blur 1 px": _blur(1.0),
    "shift 1 px": _shift,
}


def degrade(source_root: Path, root: Path, change: Degradation, config: Path = TINY) -> Path:
    """``root``: ``source_root``'s reconstructions (every seed) changed by ``change``, measured again."""
    seeds = source_root / "seeds.yaml"
    loaded = load_workflow_config([config, seeds], REPO)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(seeds, root / "seeds.yaml")
    results = loaded["paths"]["results"]
    for dataset in settings(loaded)["datasets"]:
        data = source_root / loaded["paths"]["datasets"] / dataset
        size = int(loaded["datasets"][dataset]["params"]["size"])
        for trained in (m for r in settings(loaded)["runs"] for m in members(loaded, r)):
            recon = source_root / results / dataset / trained / "reconstruction"
            out = root / results / dataset / trained / "reconstruction"
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(recon / "index.csv", out / "index.csv")
            for png in sorted(recon.glob("*.png")):
                frames = read_stacked_png(png, size).astype(np.float64)
                truth = read_video(data / "test" / png.stem).astype(np.float64)[: len(frames)]
                changed = change(frames, truth)
                # Stochastic rounding back to 8 bits (seeded per video): rounding to nearest
                # would undo a change smaller than half a level, and most errors are small.
                rng = np.random.default_rng(zlib.crc32(png.name.encode()))
                rounded = np.floor(changed + rng.random(changed.shape))
                write_stacked_png(out / png.name, np.clip(rounded, 0, 255).astype(np.uint8))
            evaluation = evaluate_reconstructions(out, data, loaded["datasets"][dataset]["protocol"], progress=False)
            write_metrics(evaluation, out.parent / "metrics.csv")
    return root


def _verdicts(comparison: pd.DataFrame) -> dict[str, int]:
    return comparison["direction"].value_counts().to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reseeds", type=int, default=4, help="sets of three other seeds in part 2")
    parser.add_argument("--work", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--degradations", nargs="*", default=list(DEGRADATIONS), choices=list(DEGRADATIONS))
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_regression_"))
    ok = True

    first = run_tiny(work / "seeds0-2", BASELINE_SEEDS)
    rerun = check(first)
    print(f"1. rerun with the baseline's seeds {BASELINE_SEEDS}:", _verdicts(rerun))
    if rerun["regressed"].any():
        ok = False
        print("   FAILED: a rerun with the baseline's seeds regressed")

    rows = []
    for index in range(1, args.reseeds + 1):
        seeds = [3 * index + i for i in range(3)]
        found = check(run_tiny(work / f"seeds{seeds[0]}-{seeds[-1]}", seeds))
        for r in found.itertuples():
            rows.append({"seeds": ", ".join(map(str, seeds)), "run": r.run, "metric": r.metric,
                         "rel. difference": r.delta / r.baseline, "interval": f"{r.low:+.4f} .. {r.high:+.4f}",
                         "threshold": r.min_effect / r.baseline, "verdict": r.direction})
    if rows:
        table = pd.DataFrame(rows)
        alarms = int((table["verdict"] == "worse").sum())
        rate = alarms / len(table)
        print(f"\n2. false alarms: three other seeds against the baseline's ({len(table)} metric checks)")
        print(table.to_string(index=False, float_format=lambda v: f"{v:+.2%}"))
        print(f"false-alarm rate: {alarms}/{len(table)} = {rate:.1%} (target <= {FALSE_ALARM_TARGET:.0%})"
              f"; largest |rel. difference| {table['rel. difference'].abs().max():.2%}")
        ok &= rate <= FALSE_ALARM_TARGET

    rows = []
    for name in args.degradations:
        found = check(degrade(first, work / "degraded" / name.replace(" ", "_"), DEGRADATIONS[name]))
        rise = found["delta"] / found["baseline"]
        flagged = int((found["direction"] == "worse").sum())
        rows.append({"degradation": name, "L1 rise (median)": float(rise.median()), "min": float(rise.min()),
                     "max": float(rise.max()), "flagged": f"{flagged}/{len(found)}",
                     "missed at >= 5%": int(((rise >= DETECT_AT) & (found["direction"] != "worse")).sum())})
    if rows:
        table = pd.DataFrame(rows)
        print(f"\n3. detection: seeds {BASELINE_SEEDS} reconstructions degraded, against the baseline")
        print(table.to_string(index=False, float_format=lambda v: f"{v:+.1%}"))
        missed = int(table["missed at >= 5%"].sum())
        print(f"checks of an L1 rise >= {DETECT_AT:.0%} not flagged: {missed} (target 0)")
        ok &= missed == 0
    print(f"\nruns kept in {work}" if args.work else "")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
