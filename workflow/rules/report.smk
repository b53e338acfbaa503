rule table1:
    input:
        metrics=table1_metrics(),
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
        + "animbench report table1 --config-json {params.config:q} --config-name {params.config_name:q} --out {output.html} > {log} 2>&1"
