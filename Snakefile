# animbench: prepare datasets, train every method, reconstruct, measure, report.
# `snakemake --cores all reports/table1.html` runs the embedded demo (workflow/config/default.yaml);
# Another `--configfile` (merged over the default) scales the same DAG up.
import os
import sys
import time
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from animbench.workflow_config import WorkflowConfigError, check_workflow_config

min_version("9.0")


# Paths from the Snakefile's folder, so `--directory` can put all outputs elsewhere.
configfile: os.path.join(workflow.basedir, "workflow/config/default.yaml")


# The same check as every `animbench` command's: one line naming the file, the key and the fix.
try:
    check_workflow_config(
        config, ", ".join(Path(f).name for f in workflow.configfiles), Path(workflow.basedir)
    )
except WorkflowConfigError as err:
    raise WorkflowError(str(err)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/avd.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/evaluators.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/weights.smk"


# When this run's regression check found a regression, its job succeeded (so the page stays at
# reports/regression.html) and the run as a whole fails here.
_STARTED = time.time()


onsuccess:
    failure = regression_failure_since(_STARTED)
    if failure:
        print(failure, file=sys.stderr)
        sys.exit(1)


rule all:
    input:
        "reports/table1.html",
        "reports/compare.html",
        "reports/index.html",
    default_target: True
