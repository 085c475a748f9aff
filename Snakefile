# The Sherlock workflow (Ding & Zhang, NeurIPS 2025) as one Snakemake DAG of file targets.
#   snakemake --cores all sft          build Stage I (R0 → sherlock_sft.json → Sherlock-SFT)
#   snakemake --cores all offline      build Stage II (offline_prefs.json → Offline)
#   snakemake --cores all iter2        build Stage III up to iteration 2 (the default: iterK)
#   snakemake --cores all              everything: iterK, evaluation of every checkpoint, figures
#   snakemake --report report.html     the report of a finished run (scores, data, training)
#   snakemake -n sft                   show the plan without running anything
#   snakemake --configfile config/presets/paper_llama32v.yaml ...   the paper's recipe
import glob
import os

from snakemake.utils import min_version

min_version("9.0")


# The embedded default; presets given with --configfile are laid over it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/downloads.smk"
include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/sft.smk"
include: "rules/offline.smk"
include: "rules/online.smk"
include: "rules/evaluate.smk"


rule all:
    """The whole pipeline: M_K (the last online iteration), every checkpoint evaluated (with
    VLMEvalKit's prediction files of its datasets), and every figure of the report."""
    default_target: True
    input:
        res("models", f"iter{ITERATIONS[-1]}"),
        rules.report_figures.input,
        VLMEVALKIT_PREDICTIONS,


onstart:
    # Before the first job: a job about to run that needs something missing stops the run here.
    stop_if_missing()


onsuccess:
    # One line per finished step (records in/out, acceptance, losses, accuracy), oldest first.
    from sherlock.runtime.step_summary import collect_summaries

    summaries = collect_summaries(glob.glob(res("logs", "*.log")))
    if summaries:
        print(f"Summary of the steps logged in {res('logs')}:", *summaries, sep="\n  ")
