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


#: `animbench evaluate` of one run with one protocol (rules evaluate, evaluate_extra_protocol).
EVALUATE_COMMAND = (
    "animbench evaluate --reconstruction {params.reconstruction} --dataset {params.dataset} "
    "--protocol {params.protocol} --out {output.metrics} --weights-dir {params.weights} "
    "--evaluators-dir {params.results}/evaluators --gt-cache {params.results}/gt_cache "
    "--threads {threads} --no-progress > {log} 2>&1"
)


def extra_protocol(wildcards):
    """The protocol wildcard, when the dataset lists it in extra_protocols (else one line why)."""
    extra = dataset_entry(wildcards).get("extra_protocols", [])
    if wildcards.protocol not in extra:
        raise WorkflowError(
            f"datasets.{wildcards.dataset}.extra_protocols does not list {wildcards.protocol!r} "
            f"(it lists {extra or 'none'}); add it to the config to measure with it"
        )
    return wildcards.protocol
