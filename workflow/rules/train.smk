rule train:
    input:
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        method_config=method_config,
        # The code training actually imports (trainer + the run's method), not all of methods/.
        code=method_sources("methods.engine.train", "methods.engine.config"),
    output:
        checkpoint=f"{RESULTS_DIR}/{{dataset}}/{{run}}/checkpoint.pt",
        info=f"{RESULTS_DIR}/{{dataset}}/{{run}}/run.json",
    params:
        overrides=run_overrides,
        seed=run_seed,
        weights=config["paths"]["weights"],
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        out=lambda wildcards, output: str(Path(output.checkpoint).parent),
        device=device,
        launch=launcher,
    conda:
        "../../environment.yml"
    log:
        "logs/train/{dataset}/{run}.log",
    benchmark:
        "benchmarks/train/{dataset}/{run}.tsv"
    threads: train_threads
    resources:
        mem_mb=8000,
        # GPUs for this job: 1 -> --device cuda, N > 1 -> torchrun with N processes.
        gpu=0,
    shell:
        ROTATE_LOG
        + "{params.launch} -v train --method-config {input.method_config} --overrides {params.overrides:q} "
        "--dataset {params.dataset} --out {params.out} --seed {params.seed} --device {params.device} "
        "--weights-dir {params.weights} --threads {threads} --no-progress"
        + TO_LOG


rule reconstruct:
    input:
        # Our training's checkpoint.pt, or a released checkpoint (a run with `checkpoint:`).
        checkpoint=reconstruct_checkpoint,
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        code=method_sources("methods.engine.reconstruct", "methods.engine.checkpoints", "methods.engine.config"),
    output:
        index=f"{RESULTS_DIR}/{{dataset}}/{{run}}/reconstruction/index.csv",
    # The no-motion baseline's reconstruction comes from rule baseline_no_motion (evaluate.smk),
    # so this rule is not a candidate for it (its input functions would reject the run name).
    wildcard_constraints:
        run="(?!no-motion/)[^/]+",
    params:
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        out=lambda wildcards, output: str(Path(output.index).parent),
        device=device,
        released=reconstruct_args,
        weights=config["paths"]["weights"],
    conda:
        "../../environment.yml"
    log:
        "logs/reconstruct/{dataset}/{run}.log",
    benchmark:
        "benchmarks/reconstruct/{dataset}/{run}.tsv"
    threads: all_cores
    resources:
        mem_mb=4000,
        gpu=0,
    # Every Snakemake job starts from an empty folder: the reconstruction's own resume keys
    # finished videos on the checkpoint alone, which would make --forcerun recompute nothing.
    shell:
        ROTATE_LOG
        + "rm -f {params.out}/*.png {params.out}/.checkpoint; "
        "animbench reconstruct --checkpoint {input.checkpoint} {params.released} --weights-dir {params.weights} "
        "--dataset {params.dataset} --out {params.out} --device {params.device} --threads {threads} --no-progress"
        + TO_LOG
