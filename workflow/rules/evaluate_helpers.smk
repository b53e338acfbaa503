# Helpers of evaluate.smk (kept apart from the rules, as snakemake --lint asks).
import yaml

# Protocols (metrics/protocols.yaml) decide whether evaluation needs evaluators trained here.
PROTOCOLS = yaml.safe_load((REPO / "metrics/protocols.yaml").read_text())
BASELINE_RUN = "no-motion"


def trained_evaluators(wildcards):
    """The evaluator files of the dataset when its protocol trains them, else nothing."""
    protocol = PROTOCOLS.get(dataset_protocol(wildcards), {})
    if "trained_evaluators" not in protocol:
        return []
    folder = f"{RESULTS_DIR}/{wildcards.dataset}/evaluators"
    return [f"{folder}/keypoints.pt", f"{folder}/identity.pt"]
