# Helpers of report.smk's table2 rule (kept apart from the rules, as snakemake --lint asks).
from reports.table2 import table2_runs


def _check_table2_references():
    # Checked when the Snakefile is read (names only: no method config is opened here, so a
    # workflow that never targets table2 does not need its runs' configs to exist).
    section = config.get("table2")
    if not section:
        return
    _defined("datasets", section["dataset"], "config key 'table2.dataset'")
    for name in table2_runs(config):
        _defined("runs", name, "config key 'table2'")


_check_table2_references()


def _table2_section():
    if not config.get("table2"):
        raise UndefinedInConfig(
            "reports/table2.html needs a 'table2:' section in the workflow config (see workflow/config/default.yaml)"
        )
    return config["table2"]


def table2_metrics(wildcards):
    """metrics.csv of every table2 run whose weights are present (the others are shown as not run).

    Evaluated only when table2 is in the DAG, because it reads the runs' method configs."""
    from reports.table2 import runs_to_train

    dataset = _table2_section()["dataset"]
    try:
        runs = runs_to_train(config, REPO)
    except FileNotFoundError as err:
        raise UndefinedInConfig(f"table2: {err}; set 'runs.<run>.config' in the workflow config or add the file") from err
    return [f"{RESULTS_DIR}/{dataset}/{run}/metrics.csv" for run in trained_runs(runs)]


def table2_baseline(wildcards):
    return f"{RESULTS_DIR}/{_table2_section()['dataset']}/{BASELINE_RUN}/metrics.csv"
