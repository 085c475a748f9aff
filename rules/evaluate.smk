# Evaluation (docs/method.md §9) and the report: every checkpoint answers every benchmark directly and
# after each self-correction turn; the scores, data statistics and training curves go into
# `snakemake --report report.html`.

rule heldout_benchmark:
    """The synthetic held-out split in the benchmark form (image, question, answer)."""
    localrule: True  # runs no model: never a cluster submission
    input:
        test=rules.synthetic_data.output.test,
    output:
        benchmark=res("eval", "benchmarks", "heldout.jsonl"),
    params:
        python=how(PY),
        script=script("build_heldout_benchmark"),
        image_root=lambda wildcards, input: os.path.dirname(input.test),
    log:
        log_file("heldout_benchmark"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --source {input.test:q} --image-root {params.image_root:q}"
        " --output {output.benchmark:q} > {log:q} 2>&1"


if VLMEVALKIT_BENCHMARKS:

    rule vlmevalkit_benchmark:
        """A VLMEvalKit dataset TSV in the benchmark form: its pictures decoded once into a
        folder, its malformed rows named and counted (never dropped silently)."""
        localrule: True  # runs no model: never a cluster submission
        input:
            tsv=lambda wildcards: benchmark_file_input(wildcards.benchmark),
        output:
            benchmark=res("eval", "benchmarks", "{benchmark}.jsonl"),
            images=directory(res("eval", "benchmarks", "{benchmark}_images")),
            summary=res("eval", "benchmarks", "{benchmark}_conversion.json"),
        wildcard_constraints:
            benchmark=benchmark_pattern(VLMEVALKIT_BENCHMARKS),
        params:
            python=how(PY),
            script=script("convert_vlmevalkit"),
            tsv=lambda wildcards: BENCHMARKS[wildcards.benchmark]["path"],  # which file it reads
            metric=lambda wildcards: BENCHMARKS[wildcards.benchmark]["metric"],
            image_root=how(
                lambda wildcards: (
                    f"--image-root {shlex.quote(BENCHMARKS[wildcards.benchmark]['image_root'])}"
                    if BENCHMARKS[wildcards.benchmark]["image_root"]
                    else ""
                )
            ),
        log:
            res("logs", "vlmevalkit_benchmark_{benchmark}.log"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} --tsv {params.tsv:q} --metric {params.metric:q}"
            " {params.image_root} --output {output.benchmark:q} --images {output.images:q}"
            " --summary {output.summary:q} > {log:q} 2>&1"


    rule vlmevalkit_predictions:
        """One checkpoint's answers on a VLMEvalKit dataset, a prediction file per turn in
        VLMEvalKit's form, which its own evaluation (GPT judges included) scores."""
        localrule: True  # runs no model: never a cluster submission
        input:
            responses=res("eval", "{benchmark}", "{checkpoint}_responses.json"),
        output:
            folder=directory(res("eval", "vlmevalkit", "{benchmark}", "{checkpoint}")),
        wildcard_constraints:
            benchmark=benchmark_pattern(VLMEVALKIT_BENCHMARKS),
            checkpoint=benchmark_pattern(CHECKPOINTS),
        params:
            python=how(PY),
            script=script("vlmevalkit_predictions"),
            dataset=lambda wildcards: Path(BENCHMARKS[wildcards.benchmark]["path"]).stem,
            answer_from=lambda wildcards: answer_from(wildcards.checkpoint),
        log:
            res("logs", "vlmevalkit_predictions_{benchmark}_{checkpoint}.log"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} --responses {input.responses:q}"
            " --checkpoint-name {wildcards.checkpoint:q} --dataset {params.dataset:q}"
            " --answer-from {params.answer_from} --output-dir {output.folder:q} > {log:q} 2>&1"


rule evaluate:
    """One checkpoint on one benchmark: the direct answer and every self-correction turn."""
    input:
        model=checkpoint_input,
        benchmark=benchmark_items,
        conversion=conversion_input,
        shards=shard_inputs(res("eval", "{benchmark}", "{checkpoint}_responses.json")),
    output:
        responses=res("eval", "{benchmark}", "{checkpoint}_responses.json"),
        summary=res("eval", "{benchmark}", "{checkpoint}_scores.json"),
    wildcard_constraints:
        checkpoint=benchmark_pattern(CHECKPOINTS),
        benchmark="|".join(re.escape(name) for name in BENCHMARKS),
    params:
        python=how(PY_GEN),
        script=script("evaluate_checkpoint"),
        model=how(lambda wildcards: checkpoint_path(wildcards.checkpoint)),
        checkpoint=checkpoint_identity,
        generation=generation_options("evaluation"),
        run=generation_run_options(),
        rounds=EVALUATION["rounds"],
        max_items=f"--max-items {EVALUATION['max_items']}" if EVALUATION["max_items"] else "",
        image_root_option=how(image_root_option),
        benchmark_file=lambda wildcards: benchmark_path(wildcards.benchmark),  # which it reads
        metric=lambda wildcards: BENCHMARKS[wildcards.benchmark]["metric"],
        answer_from=lambda wildcards: answer_from(wildcards.checkpoint),
        conversion=lambda wildcards, input: (
            f"--conversion {shlex.quote(input.conversion)}" if input.conversion else ""
        ),
        refine=refine_prompt_option("evaluation"),
        refine_prompt=refine_prompt_id("evaluation"),
        io=gather_io(responses="responses", summary="summary"),
    resources:
        **generation_resources(),
    threads: generation_resources()["cpus_per_task"]
    log:
        res("logs", "evaluate_{benchmark}_{checkpoint}.log"),
    benchmark:
        res("benchmarks", "evaluate_{benchmark}_{checkpoint}.tsv")
    conda:
        GENERATION_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --model {params.model:q} {params.generation} {params.run}"
            " --checkpoint-name {wildcards.checkpoint:q} --benchmark {params.benchmark_file:q}"
            " --benchmark-name {wildcards.benchmark:q} {params.image_root_option} --rounds"
            " {params.rounds:q} --metric {params.metric:q} --answer-from {params.answer_from}"
            " {params.conversion}"
            " {params.max_items} {params.refine}"
            " {params.io} > {log:q} 2>&1"
        )


use rule evaluate as evaluate_shard with:
    input:
        model=checkpoint_input,
        benchmark=benchmark_items,
        conversion=conversion_input,
    output:
        chunks=shard_output(res("eval", "{benchmark}", "{checkpoint}_responses.json")),
    params:
        io=shard_io("responses", "summary"),
    resources:
        **job_resources("generate"),
    threads: config["resources"]["generate"]["cpus_per_task"]
    log:
        res("logs", "evaluate_{benchmark}_{checkpoint}_shard{shard}.log"),
    benchmark:
        res("benchmarks", "evaluate_{benchmark}_{checkpoint}_shard{shard}.tsv")


VLMEVALKIT_PREDICTIONS = [
    res("eval", "vlmevalkit", benchmark, checkpoint)
    for benchmark in VLMEVALKIT_BENCHMARKS
    for checkpoint in CHECKPOINTS
]


if JUDGED_BENCHMARKS:

    rule judge_answers:
        """Open answers (MathVista, MMVet) re-scored: the local judge model (evaluation.judge)
        extracts every turn's answer, rules compare it; not VLMEvalKit's GPT judge."""
        input:
            responses=rules.evaluate.output.responses,
            scores=rules.evaluate.output.summary,
            # the judge model as a file dependency when it is a local folder
            judge_model=model_input(EVALUATION["judge"]["model"]),
        output:
            responses=res("eval", "{benchmark}", "{checkpoint}_judged.json"),
            summary=res("eval", "{benchmark}", "{checkpoint}_judged_scores.json"),
        wildcard_constraints:
            benchmark=benchmark_pattern(JUDGED_BENCHMARKS),
            checkpoint=benchmark_pattern(CHECKPOINTS),
        params:
            python=how(PY_GEN),
            script=script("judge_open_answers"),
            judge=evaluation_judge_options(),
            judge_model=EVALUATION_JUDGE_MODEL,
            judge_run=evaluation_judge_run_options(),
        resources:
            **job_resources("generate"),
        log:
            res("logs", "judge_answers_{benchmark}_{checkpoint}.log"),
        conda:
            GENERATION_ENV
        shell:
            gpu_launch(
                "{params.script:q} --responses {input.responses:q} --scores {input.scores:q}"
                " {params.judge} {params.judge_run} --output {output.responses:q}"
                " --summary {output.summary:q}"
                " > {log:q} 2>&1"
            )


# Without a benchmark (a real source and no evaluation.benchmarks) there is nothing to score.
if BENCHMARKS:

    rule accuracy_table:
        """Accuracy of every checkpoint, direct and per correction turn: tidy table, paper-style
        table and the per-turn figure."""
        localrule: True  # runs no model: never a cluster submission
        input:
            summaries=[
                benchmark_scores(benchmark, checkpoint)
                for benchmark in BENCHMARKS
                for checkpoint in CHECKPOINTS
            ],
        output:
            parquet=res("eval", "accuracy.parquet"),
            csv=res("eval", "accuracy.csv"),
            json=res("eval", "accuracy.json"),
            html=report(
                res("eval", "accuracy_table.html"),
                caption="../report/accuracy_table.rst",
                category="3. Evaluation",
                labels={"figure": "accuracy table"},
            ),
            figure=report(
                res("eval", "accuracy_by_turn.png"),
                caption="../report/accuracy_by_turn.rst",
                category="3. Evaluation",
                labels={"figure": "accuracy by turn"},
            ),
        params:
            python=how(PY),
            script=script("accuracy_table"),
            benchmarks=",".join(BENCHMARKS),  # which summaries it reads (input)
            checkpoints=",".join(CHECKPOINTS),
            paper="--compare-with-paper" if EVALUATION["compare_with_paper"] else "",
        log:
            log_file("accuracy_table"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} {input.summaries:q} --checkpoints {params.checkpoints:q}"
            " --parquet {output.parquet:q} --csv {output.csv:q} --json {output.json:q}"
            " --html {output.html:q} --figure {output.figure:q} {params.paper} > {log:q} 2>&1"


    rule does_it_work:
        """This run's scores beside the blind baselines, and the method's signature checked."""
        localrule: True  # runs no model: never a cluster submission
        input:
            accuracy=rules.accuracy_table.output.json,
            chosen=expand(rules.chosen.output.summary, k=ITERATIONS),
        output:
            html=report(
                res("eval", "does_it_work.html"),
                caption="../report/does_it_work.rst",
                category="3. Evaluation",
                labels={"figure": "does it work?"},
            ),
            json=res("eval", "does_it_work.json"),
        params:
            python=how(PY),
            script=script("does_it_work"),
            iterations=ITERATIONS,  # which summaries it reads (input)
        log:
            log_file("does_it_work"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} --accuracy {input.accuracy:q}"
            " --chosen-summaries {input.chosen:q} --html {output.html:q} --json {output.json:q}"
            " > {log:q} 2>&1"


    rule evaluation:
        """Every checkpoint scored on every benchmark (`snakemake --cores all evaluation`), and
        VLMEvalKit's prediction files of the VLMEvalKit datasets."""
        localrule: True
        input:
            rules.accuracy_table.output,
            VLMEVALKIT_PREDICTIONS,


if BENCHMARKS and OUTSIDE_MODELS:

    use rule accuracy_table as models_accuracy_table with:
        input:
            summaries=[
                benchmark_scores(benchmark, model)
                for benchmark in BENCHMARKS
                for model in OUTSIDE_MODELS
            ],
        output:
            parquet=res("eval", "models", "accuracy.parquet"),
            csv=res("eval", "models", "accuracy.csv"),
            json=res("eval", "models", "accuracy.json"),
            html=res("eval", "models", "accuracy_table.html"),
            figure=res("eval", "models", "accuracy_by_turn.png"),
        params:
            checkpoints=",".join(OUTSIDE_MODELS),
            paper="",
        log:
            log_file("models_accuracy_table"),


    rule evaluate_models:
        """Only the outside models (evaluation.models) scored on every benchmark, nothing
        trained (`snakemake --cores all evaluate_models`): their own table in eval/models/ and
        VLMEvalKit's prediction files; the full table (rule evaluation) holds them too."""
        localrule: True
        input:
            rules.models_accuracy_table.output,
            [
                res("eval", "vlmevalkit", benchmark, model)
                for benchmark in VLMEVALKIT_BENCHMARKS
                for model in OUTSIDE_MODELS
            ],


rule training_curves:
    """Loss, reward margins and reward accuracies of one training stage, from its checkpoint."""
    localrule: True  # runs no model: never a cluster submission
    input:
        model=lambda wildcards: training_folder(wildcards.stage),  # an adapter's logs too
    output:
        figure=report(
            res("report", "training_{stage}.png"),
            caption="../report/training_curves.rst",
            category="2. Training",
            labels={"stage": "{stage}"},
        ),
    wildcard_constraints:
        stage="|".join(TRAINED),
    params:
        python=how(PY),
        script=script("training_curves"),
    log:
        res("logs", "training_curves_{stage}.log"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --model {input.model:q} --stage {wildcards.stage:q}"
        " --output {output.figure:q} > {log:q} 2>&1"


rule data_report:
    """Records in and out of every data step, perturbation histograms, online acceptance."""
    localrule: True  # runs no model: never a cluster submission
    input:
        source_summary=rules.source_records.output.summary,
        splits=[rules.splits.output.d_a, rules.splits.output.d_b, *rules.splits.output.pools],
        sherlock_sft=rules.sherlock_sft_data.output.data,
        offline_source=offline_source_split(),
        offline_pairs=rules.offline_prefs.output.data,
        chosen=expand(rules.chosen.output.summary, k=ITERATIONS),
        online_pairs=expand(rules.rejected.output.data, k=ITERATIONS),
    output:
        table_html=report(
            res("report", "data_stages.html"),
            caption="../report/data_stages.rst",
            category="1. Data",
            labels={"figure": "records per step"},
        ),
        table_csv=res("report", "data_stages.csv"),
        perturbations=report(
            res("report", "perturbations.png"),
            caption="../report/perturbations.rst",
            category="1. Data",
            labels={"figure": "perturbations"},
        ),
        acceptance=report(
            res("report", "acceptance.png"),
            caption="../report/acceptance.rst",
            category="1. Data",
            labels={"figure": "online acceptance"},
        ),
    params:
        python=how(PY),
        script=script("data_report"),
        iterations=ITERATIONS,  # which files it reads (input)
    log:
        log_file("data_report"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --source-summary {input.source_summary:q}"
        " --splits {input.splits:q} --sherlock-sft {input.sherlock_sft:q}"
        " --offline-source {input.offline_source:q} --offline-pairs {input.offline_pairs:q}"
        " --chosen-summaries {input.chosen:q} --online-pairs {input.online_pairs:q}"
        " --table-html {output.table_html:q} --table-csv {output.table_csv:q}"
        " --perturbations {output.perturbations:q} --acceptance {output.acceptance:q} > {log:q}"
        " 2>&1"


if SEED_STUDY:

    rule seed_study:
        """The demo's scores over seeds (evaluation.seed_study: an ablation's study of a variant
        over its seeds, docs/ablations.md) as a report page beside this run's own."""
        localrule: True  # runs no model: never a cluster submission
        output:
            html=report(
                res("report", "seed_study.html"),
                caption="../report/seed_study.rst",
                category="3. Evaluation",
                labels={"figure": "does it work? over seeds"},
            ),
            figure=report(
                res("report", "seed_study.png"),
                caption="../report/seed_study.rst",
                category="3. Evaluation",
                labels={"figure": "score by turn over seeds"},
            ),
        params:
            python=how(PY),
            script=script("seed_study_page"),
            # a workflow file: compared by identity, not by where the checkout lies
            study=how(SEED_STUDY),
            study_id=identity(SEED_STUDY),
            figure_id=identity(str(Path(SEED_STUDY).with_suffix(".png"))),
        log:
            log_file("seed_study"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} --study {params.study:q} --html {output.html:q}"
            " --figure {output.figure:q} > {log:q} 2>&1"


rule report_figures:
    """Everything the report shows: scores, training curves and data statistics."""
    localrule: True
    input:
        rules.accuracy_table.output if BENCHMARKS else [],
        rules.does_it_work.output if BENCHMARKS else [],
        rules.seed_study.output if SEED_STUDY else [],
        rules.data_report.output,
        expand(rules.training_curves.output.figure, stage=TRAINED),
