# Helpers of weights.smk (kept apart from the rules, as snakemake --lint asks).
import re as _re

from data_prep import weights as _weights
from reports.table2 import table2_runs

WEIGHTS_DIR = config["paths"]["weights"]
WEIGHTS_FILES = {entry.filename: name for name, entry in _weights.REGISTRY.items()}
WEIGHTS_FILE_PATTERN = "|".join(_re.escape(f) for f in sorted(WEIGHTS_FILES))


def _report_runs():
    """(run, dataset) of every training the reports ask for: Table 1 and Table 2."""
    pairs = []
    table1 = config.get("table1", {})
    for dataset in table1.get("datasets", []):
        pairs += [(run, dataset) for run in table1.get("runs", [])]
    if config.get("table2"):
        pairs += [(run, config["table2"]["dataset"]) for run in table2_runs(config)]
    return pairs


def weights_needed(wildcards):
    """Every weights file the configured reports need: the runs' (VGG-19, SAM, DINO) and the
    evaluation protocols' of their datasets, extra protocols included (openpifpaf, FAN + SFD,
    facenet, torchreid; rtpose, reid_baseline, openface for the paper-* protocols).
    Imports here: only a DAG that targets fetch_weights reads configs and protocols."""
    from methods.engine.required_weights import required_weights, run_method_config
    from metrics.protocols import get_protocol, protocol_weights

    names, datasets = [], []
    from methods.engine.releases import RELEASES
    from reports import run_kinds

    for run, dataset in _report_runs():
        if run not in config["runs"] or not run_kinds.applies(config, run, dataset):
            continue
        if run_kinds.is_released(config, run):
            # A released run needs its checkpoint file (when it names a release), no training weights.
            found = run_kinds.checkpoint_of(config, run, dataset)
            names += [found] if found in RELEASES else []
        else:
            _, method_config = run_method_config(config["runs"][run], dataset, REPO)
            names += required_weights(method_config)
        if dataset not in datasets:
            datasets.append(dataset)
    for dataset in datasets:
        entry = config["datasets"][dataset]
        for protocol in [entry["protocol"], *entry.get("extra_protocols", [])]:
            names += protocol_weights(get_protocol(protocol))
    unique = list(dict.fromkeys(names))
    return [f"{WEIGHTS_DIR}/{_weights.REGISTRY[name].filename}" for name in unique]
