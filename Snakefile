# The Sherlock workflow (Ding & Zhang, NeurIPS 2025) as one Snakemake DAG of file targets.
#   snakemake --cores all sft          build Stage I (R0 → sherlock_sft.json → Sherlock-SFT)
#   snakemake --cores all offline      build Stage II (offline_prefs.json → Offline)
#   snakemake --cores all iter2        build Stage III up to iteration 2 (the default: iterK)
#   snakemake --cores all              everything: iterK, evaluation of every checkpoint, figures
#   snakemake --report report.html     the report of a finished run (scores, data, training)
#   snakemake -n sft                   show the plan without running anything
#   snakemake --configfile config/presets/paper_llama32v.yaml ...   the paper's recipe
#   snakemake --cores all ablations --configfile config/ablations/beta_refine.yaml
#                                      variants × seeds in one DAG, compared (docs/ablations.md)
import os

from snakemake.utils import min_version

min_version("9.0")


# The embedded default; presets given with --configfile are laid over it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "report/workflow.rst"


# An ablation (config `ablations`, docs/ablations.md): every variant at every seed is an instance
# of this same workflow (a module with its own config); their stages are shared where equal.
if (config.get("ablations") or {}).get("seeds"):

    include: "rules/ablations.smk"

else:

    include: "rules/common.smk"
    include: "rules/downloads.smk"
    include: "rules/data.smk"
    include: "rules/base.smk"
    include: "rules/sft.smk"
    include: "rules/offline.smk"
    include: "rules/online.smk"
    include: "rules/lora.smk"
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
        # Before the first job: a job about to run that needs something missing stops the run.
        stop_if_missing()

    onsuccess:
        # One line per finished step (records in/out, acceptance, losses, accuracy), oldest first.
        from sherlock.runtime.step_summary import collect_summaries

        summaries = collect_summaries(run_log_files())
        if summaries:
            print(f"Summary of the steps logged in {RESULTS}:", *summaries, sep="\n  ")
