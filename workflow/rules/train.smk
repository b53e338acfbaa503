rule train:
    input:
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        method_config=method_config,
        code=package_sources("methods", "data_prep"),
    output:
        checkpoint=f"{RESULTS_DIR}/{{dataset}}/{{run}}/checkpoint.pt",
        info=f"{RESULTS_DIR}/{{dataset}}/{{run}}/run.json",
    params:
        overrides=run_overrides,
        seed=config["seed"],
        weights=config["paths"]["weights"],
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        out=lambda wildcards, output: str(Path(output.checkpoint).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/train/{dataset}/{run}.log",
    benchmark:
        "benchmarks/train/{dataset}/{run}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=8000,
        gpu=0,
    shell:
        "animbench -v train --method-config {input.method_config} --overrides {params.overrides:q} "
        "--dataset {params.dataset} --out {params.out} --seed {params.seed} "
        "--weights-dir {params.weights} --threads {threads} --no-progress > {log} 2>&1"


rule reconstruct:
    input:
        checkpoint=f"{RESULTS_DIR}/{{dataset}}/{{run}}/checkpoint.pt",
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        code=package_sources("methods", "data_prep"),
    output:
        index=f"{RESULTS_DIR}/{{dataset}}/{{run}}/reconstruction/index.csv",
    params:
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        out=lambda wildcards, output: str(Path(output.index).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/reconstruct/{dataset}/{run}.log",
    benchmark:
        "benchmarks/reconstruct/{dataset}/{run}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    shell:
        "animbench reconstruct --checkpoint {input.checkpoint} --dataset {params.dataset} "
        "--out {params.out} --threads {threads} --no-progress > {log} 2>&1"
