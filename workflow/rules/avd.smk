# AVD (animation via disentanglement) after training: a separate step, run only when asked for,
# e.g. `snakemake --cores all results/synthetic/fomm/checkpoint_avd.pt` or the `avd_all` target.
# The trained checkpoint is never rewritten; checkpoint_avd.pt holds it plus `avd_network`.
# AVD hyper-parameters: methods/engine/train_avd.py DEFAULTS (MRAA's reference values) < the method
# config's train_avd_params < the workflow config's optional `avd_params` (a JSON object).
import json


rule train_avd:
    input:
        checkpoint=f"{RESULTS_DIR}/{{dataset}}/{{run}}/checkpoint.pt",
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        code=method_sources("methods.engine.train_avd", "methods.engine.checkpoints", "methods.engine.config"),
    output:
        checkpoint=f"{RESULTS_DIR}/{{dataset}}/{{run}}/checkpoint_avd.pt",
    params:
        overrides=lambda wildcards: json.dumps(config.get("avd_params", {})),
        seed=run_seed,
        dataset=lambda wildcards, input: str(Path(input.manifest).parent),
        device=device,
    conda:
        "../../environment.yml"
    log:
        "logs/train_avd/{dataset}/{run}.log",
    benchmark:
        "benchmarks/train_avd/{dataset}/{run}.tsv"
    threads: train_threads
    resources:
        mem_mb=4000,
        gpu=0,
    shell:
        ROTATE_LOG
        + "animbench -v train-avd --checkpoint {input.checkpoint} --dataset {params.dataset} "
        "--out {output.checkpoint} --params {params.overrides:q} --seed {params.seed} "
        "--device {params.device} --threads {threads} --no-progress > {log} 2>&1"


rule avd_all:
    input:
        expand(
            f"{RESULTS_DIR}/{{dataset}}/{{run}}/checkpoint_avd.pt",
            dataset=config["table1"]["datasets"],
            run=trained_runs(run_kinds.trained(config, config["table1"]["runs"])),
        ),
