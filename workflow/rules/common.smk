# Helpers shared by the rules. Rules stay thin: each calls one `animbench` subcommand.
import json
from pathlib import Path

REPO = Path(workflow.basedir)
DATASETS_DIR = config["paths"]["datasets"]
RESULTS_DIR = config["paths"]["results"]


def package_sources(*packages):
    """Python sources of the given packages; a job re-runs when any of them is edited."""
    return sorted(str(p) for package in packages for p in (REPO / package).rglob("*.py"))


def method_config(wildcards):
    """methods/configs/{method}/{dataset}.yaml unless the run names its own config."""
    run = config["runs"][wildcards.run]
    path = run.get("config", f"methods/configs/{run['method']}/{wildcards.dataset}.yaml")
    return str(REPO / path)


def run_overrides(wildcards):
    return json.dumps(config["runs"][wildcards.run].get("overrides", {}))


def dataset_protocol(wildcards):
    return config["datasets"][wildcards.dataset]["protocol"]


def dataset_builder(wildcards):
    return config["datasets"][wildcards.dataset]["builder"]


def dataset_params(wildcards):
    return json.dumps(config["datasets"][wildcards.dataset].get("params", {}))


def table1_metrics():
    return expand(
        f"{RESULTS_DIR}/{{dataset}}/{{run}}/metrics.csv",
        dataset=config["table1"]["datasets"],
        run=config["table1"]["runs"],
    )
