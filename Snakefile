# The Sherlock workflow (Ding & Zhang, NeurIPS 2025) as one Snakemake DAG of file targets.
#   snakemake --cores all sft          build Stage I (R0 → sherlock_sft.json → Sherlock-SFT)
#   snakemake --cores all offline      build Stage II (offline_prefs.json → Offline)
#   snakemake --cores all iter2        build Stage III up to iteration 2 (the default: iterK)
#   snakemake -n sft                   show the plan without running anything
#   snakemake --configfile config/presets/paper_llama32v.yaml ...   the paper's recipe
import os

from snakemake.utils import min_version

min_version("9.0")


# The embedded default; presets given with --configfile are laid over it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/sft.smk"
include: "rules/offline.smk"
include: "rules/online.smk"


rule all:
    """The whole pipeline: the model of the last online iteration, M_K."""
    default_target: True
    input:
        res("models", f"iter{ITERATIONS[-1]}"),
