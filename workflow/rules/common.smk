# Helpers shared by the rules. Rules stay thin: each calls one `animbench` subcommand.
import ast
import functools
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from reports import run_kinds
from reports import seeds as run_seeds

REPO = Path(workflow.basedir)
DATASETS_DIR = config["paths"]["datasets"]
RESULTS_DIR = config["paths"]["results"]
#: Top-level packages of this repository; imports of anything else are library imports.
PACKAGES = ("animbench", "methods", "metrics", "data_prep", "reports")


# --- configuration errors: one line naming the key -----------------------------------------


class UndefinedInConfig(WorkflowError):
    """A run or dataset used by the workflow is not defined in its config."""


def _defined(section, name, used_by):
    if name not in config[section]:
        defined = ", ".join(sorted(config[section])) or "none"
        raise UndefinedInConfig(
            f"{used_by} names {section[:-1]} {name!r}, which is not defined under '{section}:' in "
            f"the workflow config (defined: {defined}); add it there or fix the name"
        )
    return config[section][name]


def _check_references():
    # Checked when the Snakefile is read, so a typo fails before any job starts.
    for key in ("table1", "regression"):
        section = config.get(key) or {}
        for name in section.get("datasets", []):
            _defined("datasets", name, f"config key '{key}.datasets'")
        for name in section.get("runs", []):
            _defined("runs", name, f"config key '{key}.runs'")


_check_references()


def _trained(wildcards):
    """(config run, seed) of a trained run's name: `fomm`, or `fomm-seed2` of a run with seeds."""
    found = run_seeds.resolve(config, wildcards.run)
    if found is None:
        # Not a trained run: the same one-line error as any undefined name.
        _defined("runs", wildcards.run, f"target {RESULTS_DIR}/{wildcards.dataset}/{wildcards.run}/")
        raise UndefinedInConfig(
            f"run {wildcards.run!r} lists seeds: its trainings are "
            f"{', '.join(run_seeds.members(config, wildcards.run))}; target one of those"
        )
    return found


def run_entry(wildcards):
    return config["runs"][_trained(wildcards)[0]]


def run_seed(wildcards):
    return _trained(wildcards)[1]


def trained_runs(runs):
    """Every trained run (one per seed) of the config runs `runs`."""
    return run_seeds.expand(config, runs)


def dataset_entry(wildcards):
    return _defined("datasets", wildcards.dataset, f"target for dataset {wildcards.dataset!r}")


# --- which cores and device a job gets -----------------------------------------------------


def all_cores(wildcards):
    """Every core Snakemake was given (1 when it was given none, e.g. `snakemake --unlock`).

    A callable, because reading `workflow.cores` while the Snakefile is parsed fails for commands
    that take no --cores (`--unlock`, `--cleanup-metadata`, a profile with an executor)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def train_threads(wildcards):
    """Cores of one training job: the config's `train_threads` (`all` or a number), at most
    every core Snakemake was given."""
    wanted = config.get("train_threads", "all")
    cores = all_cores(wildcards)
    return cores if wanted == "all" else min(int(wanted), cores)


def device(wildcards, resources):
    """`--device` from the job's declared resources: `gpu: N>0` -> cuda, else auto."""
    return "cuda" if int(resources.get("gpu", 0) or 0) > 0 else "auto"


def launcher(wildcards, resources):
    """One process, or torchrun with one process per GPU when the job asks for several."""
    gpus = int(resources.get("gpu", 0) or 0)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m animbench"
    return "animbench"


# A rerun keeps the logs of earlier attempts. Snakemake deletes a job's log before running it, so
# each command also writes its output to `{log}.last` (not declared, so kept), and the next
# attempt rotates that copy: {log}.1 is the previous attempt, ... {log}.5 the oldest kept.
ROTATE_LOG = (
    "for i in 4 3 2 1; do if [ -e {log}.$i ]; then mv -f {log}.$i {log}.$((i+1)); fi; done; "
    "if [ -e {log}.last ]; then mv -f {log}.last {log}.1; fi; "
)
#: Replaces `> {log} 2>&1` at the end of a command.
TO_LOG = " 2>&1 | tee {log}.last > {log}"


# --- code each step depends on, computed from its imports ----------------------------------


def _module_file(name):
    """The source file of repository module `name` (a.b.c), or None when it is not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """Repository modules imported anywhere in `path`, lazy imports inside functions included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append(base)
            # `from data_prep import weights` imports the module data_prep.weights.
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return found


@functools.cache
def _closure(roots):
    files, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in files:
                files.add(path)
                todo.extend(_imports(path))
    return tuple(sorted(str(p) for p in files))


def step_sources(*modules):
    """Source files the given modules import, transitively, within this repository."""
    return list(_closure(tuple(modules)))


@functools.cache
def method_module(method):
    """The module that registers `method`, as the method registry knows it (the Snakefile's
    config check has already refused an unknown method)."""
    from methods.registry import method_source

    path = method_source(method).resolve()
    return _module_name(path) if path.is_relative_to(REPO) else None


def method_sources(*step_modules):
    """Input function: what the step's modules import plus the run's method module."""

    def sources(wildcards):
        method = run_entry(wildcards)["method"]
        registering = method_module(method)
        return step_sources(*step_modules, *([registering] if registering else []))

    return sources


def package_sources(*packages):
    """Python sources of the given packages; a job re-runs when any of them is edited."""
    return sorted(str(p) for package in packages for p in (REPO / package).rglob("*.py"))


# --- per-run and per-dataset parameters ----------------------------------------------------


def method_config(wildcards):
    """methods/configs/{method}/{dataset}.yaml unless the run names its own config."""
    run = run_entry(wildcards)
    dataset_entry(wildcards)
    if "checkpoint" in run:
        raise UndefinedInConfig(
            f"run {wildcards.run!r} reconstructs with checkpoint {run['checkpoint']!r}: it is not "
            f"trained; target {RESULTS_DIR}/{wildcards.dataset}/{wildcards.run}/metrics.csv instead"
        )
    path = REPO / run.get("config", f"methods/configs/{run['method']}/{wildcards.dataset}.yaml")
    if not path.is_file():
        raise UndefinedInConfig(
            f"run {wildcards.run!r} on dataset {wildcards.dataset!r}: method config {path} does not "
            f"exist; set 'runs.{_trained(wildcards)[0]}.config' in the workflow config or add the file"
        )
    return str(path)


def run_overrides(wildcards):
    return json.dumps(run_entry(wildcards).get("overrides", {}))


def _released_checkpoint(wildcards):
    """The release name or path of a run with `checkpoint:` on this dataset (None if trained)."""
    run_entry(wildcards)
    dataset_entry(wildcards)
    if not run_kinds.is_released(config, wildcards.run):
        return None
    found = run_kinds.checkpoint_of(config, wildcards.run, wildcards.dataset)
    if found is None:
        raise UndefinedInConfig(
            f"run {wildcards.run!r} names no checkpoint for dataset {wildcards.dataset!r} "
            f"(runs.{wildcards.run}.checkpoint lists {', '.join(config['runs'][wildcards.run]['checkpoint'])})"
        )
    return found


def reconstruct_checkpoint(wildcards):
    """What reconstruction loads: our training's checkpoint.pt, a release's file in the weights
    folder (rule fetch_weights_file downloads it where the internet is reachable), or a path."""
    from methods.engine.releases import RELEASES
    from data_prep.weights import REGISTRY

    found = _released_checkpoint(wildcards)
    if found is None:
        return f"{RESULTS_DIR}/{wildcards.dataset}/{wildcards.run}/checkpoint.pt"
    if found in RELEASES:
        return f"{config['paths']['weights']}/{REGISTRY[found].filename}"
    return found


def reconstruct_args(wildcards):
    """`animbench reconstruct` arguments of a run with `checkpoint:`: the release (whose digest
    the command checks before loading) and the method config (a release's default: ours for its
    dataset, with its align_corners)."""
    from methods.engine.releases import RELEASES

    found = _released_checkpoint(wildcards)
    if found is None:
        return ""
    run = run_entry(wildcards)
    parts = [f"--release {found}"] if found in RELEASES else []
    if "config" in run or found not in RELEASES:
        default = f"methods/configs/{run['method']}/{wildcards.dataset}.yaml"
        parts.append(f"--method-config {REPO / run.get('config', default)}")
    if run.get("overrides"):
        parts.append(f"--overrides {shlex.quote(json.dumps(run['overrides']))}")
    return " ".join(parts)


def dataset_protocol(wildcards):
    return dataset_entry(wildcards)["protocol"]


def dataset_builder(wildcards):
    return dataset_entry(wildcards)["builder"]


def dataset_params(wildcards):
    return json.dumps(dataset_entry(wildcards).get("params", {}))


def run_results(name, datasets, runs):
    """`{results}/{dataset}/{run}/{name}` of every trained run (one per seed) and released run
    of `runs` on each of `datasets` it applies to (a per-dataset checkpoint map may skip some)."""
    return [
        f"{RESULTS_DIR}/{dataset}/{member}/{name}"
        for dataset in datasets
        for run in runs
        if run_kinds.applies(config, run, dataset)
        for member in run_seeds.members(config, run)
    ]


def extra_protocols(dataset):
    """The dataset's protocols after its first (datasets.<name>.extra_protocols)."""
    return config["datasets"][dataset].get("extra_protocols", [])


def table1_metrics():
    """metrics.csv of Table 1's runs with each dataset's protocol, then with its extra ones."""
    datasets, runs = config["table1"]["datasets"], config["table1"]["runs"]
    extra = [
        path
        for dataset in datasets
        for protocol in extra_protocols(dataset)
        for path in run_results(f"protocols/{protocol}/metrics.csv", [dataset], runs)
    ]
    return run_results("metrics.csv", datasets, runs) + extra


def table1_baselines():
    """The no-motion row of every Table 1 dataset, with each of its protocols."""
    datasets = config["table1"]["datasets"]
    return [f"{RESULTS_DIR}/{d}/{BASELINE_RUN}/metrics.csv" for d in datasets] + [
        f"{RESULTS_DIR}/{d}/{BASELINE_RUN}/protocols/{p}/metrics.csv"
        for d in datasets
        for p in extra_protocols(d)
    ]


def regression_metrics():
    section = config.get("regression") or {}
    return run_results(
        "metrics.csv",
        section.get("datasets", config["table1"]["datasets"]),
        section.get("runs", config["table1"]["runs"]),
    )


#: The regression rule's verdict ("regressed: ..." or "passed: ..."), read by onsuccess.
REGRESSION_VERDICT = "logs/report/regression.verdict"


def regression_failure_since(started):
    """The summary of a regression check that ran in this invocation and found a regression."""
    path = Path(REGRESSION_VERDICT)
    if path.is_file() and path.stat().st_mtime >= started:
        verdict, _, summary = path.read_text().strip().partition(": ")
        if verdict == "regressed":
            return summary
    return None


def regression_baseline():
    return str(REPO / "workflow/baselines" / f"{(config.get('regression') or {}).get('baseline', 'default')}.csv")
