# Ablations (docs/ablations.md): every variant of `ablations.variants` at every seed of
# `ablations.seeds` is an instance of this workflow (a module of the Snakefile with the run's own
# config, rules named <variant>_seed<S>_<rule>), all in one DAG. Each stage writes under
# <stages_dir>/<stage>-<fingerprint of the settings it reads> (rules/common.smk: res), so the
# runs that agree on a stage name the same files and one job builds them. Then every variant is
# compared with the baseline on the same questions and seeds (paired bootstrap intervals), and
# each variant's scores are summarised over its seeds.
#   snakemake --cores all ablations --configfile config/ablations/beta_refine.yaml


include: "ablation_common.smk"


# Each run as a module instance of the whole workflow, its rules named <run>_<rule>.
RULES_OF_RUN = {}
for _run in ABLATION_RUNS:
    _module, _prefix = _run.name, f"{_run.name}_"
    _before = {_r.name for _r in workflow.rules}

    module:
        name: _module
        snakefile: workflow.main_snakefile
        config: _run.config

    use rule * from _module as _prefix*

    RULES_OF_RUN[_run.name] = [
        _r.name.removeprefix(_prefix) for _r in workflow.rules if _r.name not in _before
    ]

# Each run's own globals: its res(), CHECKPOINTS, BENCHMARKS, STAGES (rules/common.smk).
RUN = {entry.name: globals()[entry.name] for entry in ABLATION_RUNS}
FIRST = RUN[ABLATION_RUNS[0].name]
# The comparison's own jobs run in the first run's stack, with its helpers (rules/common.smk).
PY, TRAIN_ENV, how, script = FIRST.PY, FIRST.TRAIN_ENV, FIRST.how, FIRST.script


# Where runs share a stage, the first run's rule builds it: the same rule of later runs gives way.
for _name in dict.fromkeys(name for names in RULES_OF_RUN.values() for name in names):
    workflow.ruleorder(
        *(f"{entry.name}_{_name}" for entry in ABLATION_RUNS if _name in RULES_OF_RUN[entry.name])
    )


# A dry run (or any run) says how many distinct folders each stage has: each is built once.
if workflow.is_main_process:
    print(plan_summary(), file=sys.stderr)


SCORED_ITEMS = {
    variant: {entry.seed: scored_items(entry) for entry in runs_of(variant)} for variant in VARIANTS
}


rule ablation_comparison:
    """Every variant against the baseline, and the method's claims within each variant (the
    correction gain of every checkpoint, the last iteration against SFT): differences on the same
    questions and seeds with paired bootstrap intervals."""
    localrule: True  # runs no model: never a cluster submission
    input:
        [
            path
            for by_seed in SCORED_ITEMS.values()
            for by_benchmark in by_seed.values()
            for by_name in by_benchmark.values()
            for path in by_name.values()
        ],
    output:
        json=ablation_path("comparison", "paired.json"),
        csv=ablation_path("comparison", "paired.csv"),
        html=report(
            ablation_path("report", "paired.html"),
            caption="../report/paired.rst",
            category="4. Ablation",
            labels={"figure": "paired differences"},
        ),
        figure=report(
            ablation_path("report", "paired.png"),
            caption="../report/paired.rst",
            category="4. Ablation",
            labels={"figure": "paired differences (plot)"},
        ),
    params:
        python=how(PY),  # how() and script(): how the job runs, never compared
        script=script("paired_comparison"),
        runs=json.dumps(SCORED_ITEMS, sort_keys=True),
        baseline=BASELINE,
        bootstrap=(
            f"--resamples {BOOTSTRAP['resamples']} --bootstrap-seed {BOOTSTRAP['seed']}"
            f" --confidence {BOOTSTRAP['confidence']}"
        ),
    log:
        ablation_path("logs", "ablation_comparison.log"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --runs {params.runs:q} --baseline {params.baseline:q}"
        " {params.bootstrap} --json {output.json:q} --csv {output.csv:q}"
        " --html {output.html:q} --figure {output.figure:q} > {log:q} 2>&1"


rule ablation_study:
    """One variant over its seeds: the score of every checkpoint by turn (mean ± spread), the
    blind baselines, the signature (over the seeds, and each claim with its paired interval), the
    online acceptance and the seconds of every stage."""
    localrule: True  # runs no model: never a cluster submission
    input:
        accuracy=lambda wildcards: [
            run_files["accuracy"] for run_files in study_runs(wildcards.variant).values()
        ],
        chosen=lambda wildcards: [
            path
            for run_files in study_runs(wildcards.variant).values()
            for path in run_files["chosen"]
        ],
        paired=rules.ablation_comparison.output.json,
    output:
        json=ablation_path("study", "{variant}.json"),
        markdown=ablation_path("study", "{variant}.md"),
        figure=ablation_path("study", "{variant}.png"),
    wildcard_constraints:
        variant="|".join(VARIANTS),
    params:
        python=how(PY),  # how() and script(): how the job runs, never compared
        script=script("ablation_study"),
        runs=lambda wildcards: json.dumps(study_runs(wildcards.variant), sort_keys=True),
    log:
        ablation_path("logs", "ablation_study_{variant}.log"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --variant {wildcards.variant:q} --runs {params.runs:q}"
        " --paired {input.paired:q} --json {output.json:q} --markdown {output.markdown:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"


rule ablation_study_page:
    """A variant's study as a report page (the page evaluation.seed_study shows in a run)."""
    localrule: True  # runs no model: never a cluster submission
    input:
        study=rules.ablation_study.output.json,
        figure=rules.ablation_study.output.figure,
    output:
        html=report(
            ablation_path("report", "study_{variant}.html"),
            caption="../report/seed_study.rst",
            category="4. Ablation",
            labels={"variant": "{variant}", "figure": "over seeds"},
        ),
        figure=report(
            ablation_path("report", "study_{variant}.png"),
            caption="../report/seed_study.rst",
            category="4. Ablation",
            labels={"variant": "{variant}", "figure": "score by turn over seeds"},
        ),
    wildcard_constraints:
        variant="|".join(VARIANTS),
    params:
        python=how(PY),  # how() and script(): how the job runs, never compared
        script=script("seed_study_page"),
    log:
        ablation_path("logs", "ablation_study_page_{variant}.log"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --study {input.study:q} --html {output.html:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"


rule ablations:
    """Every variant at every seed built (each run's default target: its stages, evaluation and
    report files), every variant compared with the baseline, each variant's study over seeds."""
    default_target: True
    localrule: True
    input:
        [str(p) for entry in ABLATION_RUNS for p in getattr(rules, f"{entry.name}_all").input],
        rules.ablation_comparison.output,
        expand(rules.ablation_study_page.output, variant=VARIANTS),


# Snakemake ties an input named through `rules.X.output` to rule X of the same module, which
# would give every run its own job for a file the runs share. Every input is matched to its
# producers by its path instead, and the ruleorder above picks the first run's rule.
for _rule in workflow.rules:
    _rule.dependencies.clear()


onsuccess:
    # The ablation's own summary lines (each run's steps are in its folders' logs).
    from sherlock.runtime.step_summary import collect_summaries

    summaries = collect_summaries(glob.glob(ablation_path("logs", "*.log")))
    if summaries:
        print(f"Summary of the ablation {ABLATION_DIR}:", *summaries, sep="\n  ")
