# Real YouTube datasets (TaiChiHD, VoxCeleb, TED-talks), prepared in three stages that scale:
#   fetch_metadata (official table, pinned URL + SHA-256)  ->  checkpoint video_chunks (validated
#   rows; lists the videos)  ->  prepare_video (one job per YouTube id: preprocessed copy, raw
#   folder or yt-dlp; crops)  ->  assemble_video_dataset (manifest.csv + availability report).
# MGif and synthetic are one job each (rule prepare_dataset in data.smk).
# Download concurrency: `--resources downloads=N` (each prepare_video job holds one).
# Helpers (video_datasets, video_metadata, video_status_files, ...): datasets_helpers.smk.


include: "datasets_helpers.smk"


rule fetch_metadata:
    output:
        f"{METADATA_DIR}/{{builder}}-metadata.csv",
    wildcard_constraints:
        builder="|".join(VIDEO_BUILDERS),
    params:
        params=json.dumps({"metadata_dir": METADATA_DIR, "progress": False}),
    conda:
        "../../environment.yml"
    log:
        "logs/prepare/{builder}-metadata.log",
    threads: 1
    shell:
        "animbench dataset fetch {wildcards.builder} --params {params.params:q} --root . > {log} 2>&1"


checkpoint video_chunks:
    input:
        metadata=video_metadata,
        code=step_sources("data_prep.video_dataset"),
    output:
        chunks=f"{DATASETS_DIR}/{{dataset}}/chunks.csv",
    wildcard_constraints:
        dataset=_one_of(video_datasets()),
    params:
        builder=video_builder,
        params=lambda wildcards, input: _video_params_json(wildcards.dataset, str(input.metadata)),
        root=lambda wildcards, output: str(Path(output.chunks).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/prepare/{dataset}/metadata.log",
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "animbench dataset metadata {params.builder} --params {params.params:q} "
        "--root {params.root} > {log} 2>&1"


rule prepare_video:
    input:
        chunks=f"{DATASETS_DIR}/{{dataset}}/chunks.csv",
    output:
        status=f"{DATASETS_DIR}/{{dataset}}/.status/{{video}}.csv",
    wildcard_constraints:
        dataset=_one_of(video_datasets()),
        video="[A-Za-z0-9_-]+",
    params:
        builder=video_builder,
        params=video_params,
        root=lambda wildcards, input: str(Path(input.chunks).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/prepare/{dataset}/videos/{video}.log",
    benchmark:
        "benchmarks/prepare/{dataset}/videos/{video}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        downloads=1,
    shell:
        "animbench dataset video {params.builder} --params {params.params:q} "
        "--root {params.root} --video={wildcards.video:q} > {log} 2>&1"


rule assemble_video_dataset:
    input:
        status=video_status_files,
        chunks=f"{DATASETS_DIR}/{{dataset}}/chunks.csv",
        code=step_sources("data_prep.video_dataset"),
    output:
        manifest=f"{DATASETS_DIR}/{{dataset}}/manifest.csv",
        availability=f"{DATASETS_DIR}/{{dataset}}/availability.csv",
        summary=f"{DATASETS_DIR}/{{dataset}}/availability_summary.csv",
    wildcard_constraints:
        dataset=_one_of(video_datasets()),
    params:
        builder=video_builder,
        root=lambda wildcards, output: str(Path(output.manifest).parent),
    conda:
        "../../environment.yml"
    log:
        "logs/prepare/{dataset}/assemble.log",
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "animbench dataset assemble {params.builder} --root {params.root} > {log} 2>&1"


ruleorder: assemble_video_dataset > prepare_dataset
