include: "evaluate_helpers.smk"


rule evaluate:
    input:
        index=f"{RESULTS_DIR}/{{dataset}}/{{run}}/reconstruction/index.csv",
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        evaluators=trained_evaluators,
        protocols=str(REPO / "metrics/protocols.yaml"),
        # Backends are imported by name at run time (not traced by step_sources): list them all.
        code=step_sources("metrics.evaluate") + package_sources("metrics/backends"),
    output:
        metrics=f"{RESULTS_DIR}/{{dataset}}/{{run}}/metrics.csv",
        record=f"{RESULTS_DIR}/{{dataset}}/{{run}}/metrics.json",
    params:
        protocol=dataset_protocol,
        weights=config["paths"]["weights"],
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        reconstruction=lambda wildcards, input: str(Path(input.index).parent),
        results=lambda wildcards: f"{RESULTS_DIR}/{wildcards.dataset}",
    conda:
        "../../environment.yml"
    log:
        "logs/evaluate/{dataset}/{run}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    wildcard_constraints:
        run="[^/]+",
    shell:
        ROTATE_LOG + EVALUATE_COMMAND


# The same run measured with a dataset's other protocols (datasets.<name>.extra_protocols, e.g.
# the papers' own evaluators): one more metrics.csv per protocol beside the first.
rule evaluate_extra_protocol:
    input:
        index=f"{RESULTS_DIR}/{{dataset}}/{{run}}/reconstruction/index.csv",
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        protocols=str(REPO / "metrics/protocols.yaml"),
        code=step_sources("metrics.evaluate") + package_sources("metrics/backends"),
    output:
        metrics=f"{RESULTS_DIR}/{{dataset}}/{{run}}/protocols/{{protocol}}/metrics.csv",
        record=f"{RESULTS_DIR}/{{dataset}}/{{run}}/protocols/{{protocol}}/metrics.json",
    params:
        protocol=extra_protocol,
        weights=config["paths"]["weights"],
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        reconstruction=lambda wildcards, input: str(Path(input.index).parent),
        results=lambda wildcards: f"{RESULTS_DIR}/{wildcards.dataset}",
    conda:
        "../../environment.yml"
    log:
        "logs/evaluate/{dataset}/{run}/{protocol}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{run}/{protocol}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
    wildcard_constraints:
        run="[^/]+",
    shell:
        ROTATE_LOG + EVALUATE_COMMAND


# The no-motion baseline is written like a reconstruction, so `evaluate` measures it unchanged.
ruleorder: baseline_no_motion > reconstruct


rule baseline_no_motion:
    input:
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        code=step_sources("metrics.baseline"),
    output:
        index=f"{RESULTS_DIR}/{{dataset}}/{BASELINE_RUN}/reconstruction/index.csv",
    params:
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        out=lambda wildcards, output: str(Path(output.index).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/baseline/{dataset}/no-motion.log",
    benchmark:
        "benchmarks/baseline/{dataset}/no-motion.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        ROTATE_LOG
        + "animbench baseline no-motion --dataset {params.dataset} --out {params.out} --no-progress > {log} 2>&1"
