# Evaluators trained inside the DAG (the synthetic protocol's keypoint and identity networks).
# Protocols with `trained_evaluators` in metrics/protocols.yaml get theirs from this rule.


rule train_evaluators:
    input:
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        protocols=str(REPO / "metrics/protocols.yaml"),
        # Only what training imports: editing other metrics code does not retrain the evaluators.
        code=step_sources("metrics.train_evaluators"),
    output:
        keypoints=f"{RESULTS_DIR}/{{dataset}}/evaluators/keypoints.pt",
        identity=f"{RESULTS_DIR}/{{dataset}}/evaluators/identity.pt",
        validation=f"{RESULTS_DIR}/{{dataset}}/evaluators/validation.json",
    params:
        protocol=dataset_protocol,
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        out=lambda wildcards, output: str(Path(output.validation).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/evaluators/{dataset}.log",
    benchmark:
        "benchmarks/evaluators/{dataset}.tsv"
    threads: train_threads
    resources:
        mem_mb=4000,
    shell:
        ROTATE_LOG
        + "animbench -v train-evaluators --dataset {params.dataset} --out {params.out} "
        "--protocol {params.protocol} --threads {threads} --no-progress > {log} 2>&1"
