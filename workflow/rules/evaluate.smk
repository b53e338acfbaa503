rule evaluate:
    input:
        index=f"{RESULTS_DIR}/{{dataset}}/{{run}}/reconstruction/index.csv",
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        code=package_sources("metrics", "data_prep"),
    output:
        metrics=f"{RESULTS_DIR}/{{dataset}}/{{run}}/metrics.csv",
    params:
        protocol=dataset_protocol,
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        reconstruction=lambda wildcards, input: str(Path(input.index).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/evaluate/{dataset}/{run}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "animbench evaluate --reconstruction {params.reconstruction} --dataset {params.dataset} "
        "--protocol {params.protocol} --out {output.metrics} --no-progress > {log} 2>&1"
