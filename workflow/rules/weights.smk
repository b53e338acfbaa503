# Pretrained weights: `snakemake --cores 1 fetch_weights [--configfile ...]` downloads and verifies
# every file the configured reports need (data_prep/weights.py holds URL, size and checksum), on a
# machine that reaches the internet. No other rule takes these files as inputs: offline, a run
# that needs an absent file is reported as not run (Table 2) or stops with an error naming it.


include: "weights_helpers.smk"


rule fetch_weights:
    input:
        weights_needed,


rule fetch_weights_file:
    output:
        f"{WEIGHTS_DIR}/{{file}}",
    wildcard_constraints:
        file=WEIGHTS_FILE_PATTERN,
    params:
        name=lambda wildcards: WEIGHTS_FILES[wildcards.file],
        dir=lambda wildcards, output: str(Path(output[0]).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/weights/{file}.log",
    shell:
        "animbench weights fetch {params.name} --dir {params.dir} > {log} 2>&1"
