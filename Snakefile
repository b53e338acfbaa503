# animbench: prepare datasets, train every method, reconstruct, measure, report.
# `snakemake --cores all reports/table1.html` runs the embedded demo (workflow/config/default.yaml);
# Another `--configfile` (merged over the default) scales the same DAG up.
import os

from snakemake.utils import min_version, validate

min_version("9.0")


# Paths from the Snakefile's folder, so `--directory` can put all outputs elsewhere.
configfile: os.path.join(workflow.basedir, "workflow/config/default.yaml")


validate(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/avd.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/evaluators.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/weights.smk"


rule all:
    input:
        "reports/table1.html",
        "reports/index.html",
    default_target: True
