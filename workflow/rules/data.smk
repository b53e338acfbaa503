rule prepare_dataset:
    input:
        code=step_sources("data_prep.datasets"),
    output:
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
    params:
        builder=dataset_builder,
        params=dataset_params,
        root=lambda wildcards, output: str(Path(output.manifest).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "benchmarks/prepare/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        ROTATE_LOG
        + "animbench prepare {params.builder} --params {params.params:q} --out {params.root}"
        + TO_LOG
