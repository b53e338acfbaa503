rule table1:
    input:
        metrics=table1_metrics(),
        # The no-motion baseline row of every dataset (rule baseline_no_motion in evaluate.smk).
        baselines=table1_baselines(),
        code=step_sources("reports.table1"),
    output:
        html="reports/table1.html",
    params:
        config=json.dumps(config),
        config_name=", ".join(str(Path(f).name) for f in workflow.configfiles),
    conda:
        "../../environment.yml"
    log:
        "logs/report/table1.log",
    benchmark:
        "benchmarks/report/table1.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        ROTATE_LOG
        + "animbench report table1 --config-json {params.config:q} --config-name {params.config_name:q} --out {output.html}"
        + TO_LOG


# Pairwise comparisons of Table 1's runs (and the no-motion row), with per-video pictures.
rule compare:
    input:
        metrics=table1_metrics(),
        baselines=expand(f"{RESULTS_DIR}/{{dataset}}/no-motion/metrics.csv", dataset=config["table1"]["datasets"]),
        code=step_sources("reports.compare"),
    output:
        html="reports/compare.html",
    params:
        config=json.dumps(config),
        config_name=", ".join(str(Path(f).name) for f in workflow.configfiles),
    conda:
        "../../environment.yml"
    log:
        "logs/report/compare.log",
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        ROTATE_LOG
        + "animbench report compare --config-json {params.config:q} --config-name {params.config_name:q} --out {output.html}"
        + TO_LOG


# When a metric regressed the job still succeeds, so that Snakemake keeps the page where the user
# looks (it deletes a failed job's outputs); the verdict goes to logs/report/regression.verdict,
# and the Snakefile's onsuccess handler then ends the whole run with a non-zero exit status.
# Any other failure (no baseline, missing results) fails the job as usual.
rule regression:
    input:
        metrics=regression_metrics(),
        code=step_sources("reports.regression"),
    output:
        html="reports/regression.html",
    params:
        config=json.dumps(config),
        config_name=", ".join(str(Path(f).name) for f in workflow.configfiles),
        # Not an input: a missing baseline is reported by the command, with how to write one.
        baseline=regression_baseline(),
    conda:
        "../../environment.yml"
    log:
        text="logs/report/regression.log",
        verdict=REGRESSION_VERDICT,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "status=0; animbench report regression --config-json {params.config:q} "
        "--config-name {params.config_name:q} --verdict {log.verdict} --out {output.html} "
        "> {log.text} 2>&1 || status=$?; cat {log.text}; "
        "if [ $status -ne 0 ] && [ -e {output.html} ] && grep -q '^regressed' {log.verdict}; then status=0; fi; "
        "exit $status"


rule index:
    input:
        table1="reports/table1.html",
        compare="reports/compare.html",
        # Training logs and curves: runs trained here (a released checkpoint has none).
        runs=run_results("run.json", config["table1"]["datasets"], run_kinds.trained(config, config["table1"]["runs"])),
        code=step_sources("reports.index"),
    output:
        html="reports/index.html",
        curves=[
            f"reports/curves/{dataset}/{run}.png"
            for dataset in config["table1"]["datasets"]
            for run in trained_runs(run_kinds.trained(config, config["table1"]["runs"]))
        ],
    params:
        config=json.dumps(config),
        config_name=", ".join(str(Path(f).name) for f in workflow.configfiles),
    conda:
        "../../environment.yml"
    log:
        "logs/report/index.log",
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        ROTATE_LOG
        + "animbench report index --config-json {params.config:q} --config-name {params.config_name:q} --out {output.html}"
        + TO_LOG


include: "report_helpers.smk"


# Rows whose runs need weights this machine lacks are not inputs (not trained); the page shows
# them as not run, with the missing file and the fetch command.
rule table2:
    input:
        metrics=table2_metrics,
        baseline=table2_baseline,
        code=step_sources("reports.table2"),
    output:
        html="reports/table2.html",
    params:
        config=json.dumps(config),
        config_name=", ".join(str(Path(f).name) for f in workflow.configfiles),
    conda:
        "../../environment.yml"
    log:
        "logs/report/table2.log",
    benchmark:
        "benchmarks/report/table2.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        ROTATE_LOG
        + "animbench report table2 --config-json {params.config:q} --config-name {params.config_name:q} --out {output.html}"
        + TO_LOG
