# Stage III (docs/method.md §7): online self-improvement, one set of rules with the iteration k as a
# wildcard. M_0 = Offline; iteration k generates with, starts from and is referenced to M_{k-1}.


rule candidates:
    """M_{k-1} answers pool k, then corrects itself three times (REFINE), turn by turn."""
    input:
        model=policy_for,
        pool=res("data", "pool_{k}.json"),
        shards=shard_inputs(res("online", "iter{k}", "candidates.json")),
    output:
        data=res("online", "iter{k}", "candidates.json"),
    params:
        python=how(PY_GEN),
        script=script("build_candidates"),
        generation=generation_options("candidates"),
        run=generation_run_options(),
        refine=refine_prompt_option("candidates"),
        refine_prompt=refine_prompt_id("candidates"),
        io=gather_io(output="data"),
    resources:
        **generation_resources(),
    threads: generation_resources()["cpus_per_task"]
    log:
        res("logs", "candidates_iter{k}.log"),
    benchmark:
        res("benchmarks", "candidates_iter{k}.tsv")
    conda:
        GENERATION_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --model {input.model:q} --pool {input.pool:q} {params.generation} {params.run}"
            " --iteration {wildcards.k:q} {params.refine} {params.io} > {log:q} 2>&1"
        )


use rule candidates as candidates_shard with:
    input:
        model=policy_for,
        pool=res("data", "pool_{k}.json"),
    output:
        chunks=shard_output(res("online", "iter{k}", "candidates.json")),
    params:
        io=shard_io("output"),
    resources:
        **job_resources("generate"),
    threads: config["resources"]["generate"]["cpus_per_task"]
    log:
        res("logs", "candidates_iter{k}_shard{shard}.log"),
    benchmark:
        res("benchmarks", "candidates_iter{k}_shard{shard}.tsv")


rule chosen:
    """Self-consistency: keep the items whose turns 1-3 the judge finds equivalent."""
    localrule: not LLM_JUDGE  # the exact judge runs no model: never a cluster submission
    input:
        candidates=rules.candidates.output.data,
        judge_model=judge_model_input(),
    output:
        data=res("online", "iter{k}", "chosen.json"),
        summary=res("online", "iter{k}", "chosen_summary.yaml"),
    params:
        python=how(JUDGE_PY),
        script=script("select_chosen"),
        judge=judge_options(),
        judge_model=JUDGE_MODEL,
        judge_run=judge_run_options(),
        target=config["online"]["target_pairs"],
        min_pairs=config["online"]["min_pairs"],
        seed=config["seed"],
    resources:
        # only the llm judge runs a model; the exact judge is a few string comparisons
        **job_resources("generate" if LLM_JUDGE else "gather"),
    log:
        res("logs", "chosen_iter{k}.log"),
    benchmark:
        res("benchmarks", "chosen_iter{k}.tsv")
    conda:
        JUDGE_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --candidates {input.candidates:q} {params.judge} {params.judge_run}"
            " --seed {params.seed:q} --target {params.target:q} --min-pairs {params.min_pairs:q}"
            " --output {output.data:q} --summary {output.summary:q} > {log:q} 2>&1"
        )


rule rejected:
    """M_{k-1} continues the head of y0 on a perturbed image; the pairs of iteration k."""
    input:
        chosen=rules.chosen.output.data,
        model=policy_for,
        shards=shard_inputs(res("online", "iter{k}", "rejected.json")),
    output:
        data=res("online", "iter{k}", "rejected.json"),
        summary=res("online", "iter{k}", "rejected_summary.yaml"),
        images=perturbed_images(res("online", "iter{k}", "perturbed_images")),
    params:
        python=how(PY_GEN),
        script=script("build_online_prefs"),
        generation=generation_options("continuation"),
        run=generation_run_options(),
        perturbation=json.dumps(config["perturbation"], sort_keys=True),
        fit=pair_fit_options("online"),
        refine=refine_prompt_option("preference"),
        refine_prompt=refine_prompt_id("preference"),
        io=gather_io(**{"image-dir": "images", "output": "data", "summary": "summary"}),
    resources:
        **generation_resources(),
    threads: generation_resources()["cpus_per_task"]
    log:
        res("logs", "rejected_iter{k}.log"),
    benchmark:
        res("benchmarks", "rejected_iter{k}.tsv")
    conda:
        GENERATION_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --model {input.model:q} --chosen {input.chosen:q} {params.generation} {params.run}"
            " --iteration {wildcards.k:q} --perturbation {params.perturbation:q} {params.fit}"
            " {params.refine} {params.io}"
            " > {log:q} 2>&1"
        )


use rule rejected as rejected_shard with:
    input:
        chosen=rules.chosen.output.data,
        model=policy_for,
    output:
        chunks=shard_output(res("online", "iter{k}", "rejected.json")),
    params:
        io=shard_io("image-dir", "output", "summary"),
    resources:
        **job_resources("generate"),
    threads: config["resources"]["generate"]["cpus_per_task"]
    log:
        res("logs", "rejected_iter{k}_shard{shard}.log"),
    benchmark:
        res("benchmarks", "rejected_iter{k}_shard{shard}.tsv")


# Iteration k's run file: Offline's, from and referenced to M_{k-1}, with the online settings.
use rule offline_config as iter_config with:
    localrule: True  # runs no model (not inherited through use rule)
    input:
        data=rules.rejected.output.data,
        model=policy_for,
    output:
        run=res("runs", "iter{k}", "train.yaml"),
    params:
        hparams=training_results(preference_hparams("online")),
        global_batch=global_batch(preference_hparams("online")),
    log:
        res("logs", "iter_config_iter{k}.log"),


rule iter_model:
    """M_k: Sherlock preference training on iteration k's pairs."""
    input:
        run=rules.iter_config.output.run,
        data=rules.rejected.output.data,
        model=policy_for,
    output:
        model=trained_output("iter{k}"),
    params:
        python=how(PY),
        script=script("train_sherlock"),
        launch=training_launch(preference_hparams("online"), refine_prompt=refine_choice_of("preference")),
        tracking=tracking_options,
    resources:
        **training_resources(),
    threads: config["resources"]["train"]["cpus_per_task"]
    log:
        res("logs", "iter{k}.log"),
    benchmark:
        res("benchmarks", "iter{k}.tsv")
    conda:
        TRAIN_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " {input.run:q} --model-dir {output.model:q} {params.launch} {params.tracking}"
            " > {log:q} 2>&1"
        )


# `snakemake iter1`, `snakemake iter2`, ...: one named target per configured iteration.
for _k in ITERATIONS:

    rule:
        name:
            f"iter{_k}"
        localrule: True
        input:
            res("models", f"iter{_k}"),
