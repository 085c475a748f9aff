# Stage II (docs/method.md §5): perturbed continuations of annotated answers → the Offline model.
# models/sft and models/offline: a full training's output, or a LoRA adapter merged (rules/lora.smk).


rule offline_prefs:
    """Sherlock-SFT continues truncated annotated answers of D_A on perturbed images."""
    input:
        model=res("models", "sft"),
        data=offline_source_split(),
        shards=shard_inputs(res("data", "offline_prefs.json")),
    output:
        data=res("data", "offline_prefs.json"),
        summary=res("data", "offline_prefs_summary.yaml"),
        images=perturbed_images(res("data", "offline_images")),
    params:
        python=how(PY_GEN),
        script=script("build_offline_prefs"),
        source_split=config["offline"]["source_split"],  # which split it reads (input)
        perturbation=json.dumps(config["perturbation"], sort_keys=True),
        generation=generation_options("continuation"),
        run=generation_run_options(),
        # the rejected side's pre-fill (offline.rejected_prefill) is a pair-building option
        fit=pair_fit_options("offline") + rejected_prefill_option(),
        refine=refine_prompt_option("preference"),
        refine_prompt=refine_prompt_id("preference"),
        io=gather_io(**{"image-dir": "images", "output": "data", "summary": "summary"}),
    resources:
        **generation_resources(),
    threads: generation_resources()["cpus_per_task"]
    log:
        log_file("offline_prefs"),
    benchmark:
        benchmark_file("offline_prefs")
    conda:
        GENERATION_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --model {input.model:q} --data {input.data:q} {params.generation} {params.run}"
            " --perturbation {params.perturbation:q} {params.fit} {params.refine} {params.io}"
            " > {log:q} 2>&1"
        )


use rule offline_prefs as offline_prefs_shard with:
    input:
        model=res("models", "sft"),
        data=offline_source_split(),
    output:
        chunks=shard_output(res("data", "offline_prefs.json")),
    params:
        io=shard_io("image-dir", "output", "summary"),
    resources:
        **job_resources("generate"),
    threads: config["resources"]["generate"]["cpus_per_task"]
    log:
        res("logs", "offline_prefs_shard{shard}.log"),
    benchmark:
        res("benchmarks", "offline_prefs_shard{shard}.tsv")


rule offline_config:
    """Run file of the Offline training: initialised from and referenced to Sherlock-SFT; what
    the model depends on (how it trains comes at launch, rule offline)."""
    localrule: True  # runs no model: never a cluster submission
    input:
        data=rules.offline_prefs.output.data,
        model=res("models", "sft"),
    output:
        run=res("runs", "offline", "train.yaml"),
    params:
        python=how(PY),
        script=script("render_sherlock_run"),
        hparams=training_results(preference_hparams("offline")),
        global_batch=global_batch(preference_hparams("offline")),
        perturbation=json.dumps(config["perturbation"], sort_keys=True),
        refine_prompt=refine_prompt_id("preference"),
        seed=config["seed"],
        remote_code=remote_code_option(),
        pixels=image_pixel_options(),
    log:
        log_file("offline_config"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --model {input.model:q} --data {input.data:q}"
        " --hparams {params.hparams:q} --perturbation {params.perturbation:q}"
        " --seed {params.seed:q} {params.remote_code} {params.pixels}"
        " --run-file {output.run:q} > {log:q} 2>&1"


rule offline:
    """The Offline model (M_0): Sherlock preference training on offline_prefs.json (full, or a
    LoRA adapter: rules/lora.smk merges it)."""
    input:
        run=rules.offline_config.output.run,
        data=rules.offline_prefs.output.data,
        model=res("models", "sft"),
    output:
        model=trained_output("offline"),
    params:
        python=how(PY),
        script=script("train_sherlock"),
        launch=training_launch(preference_hparams("offline"), refine_prompt=refine_choice_of("preference")),
        tracking=tracking_options,
    resources:
        **training_resources(),
    threads: config["resources"]["train"]["cpus_per_task"]
    log:
        log_file("offline"),
    benchmark:
        benchmark_file("offline")
    conda:
        TRAIN_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " {input.run:q} --model-dir {output.model:q} {params.launch} {params.tracking}"
            " > {log:q} 2>&1"
        )
