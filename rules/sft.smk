# Stage I (docs/method.md §3): R0 on D_A → sherlock_sft.json from R0's own answers → Sherlock-SFT.
# Later steps read models/r0 and models/sft: a full training's output, or a LoRA training's
# adapter merged (rules/lora.smk).


rule whole_turns:
    """D_A's or D_B's SFT rows with every turn of a multi-turn record (source.multi_turn: whole):
    what R0 trains on and Stage I's direct rows, as the authors kept them."""
    localrule: True  # runs no model: never a cluster submission
    input:
        source=source_input(),
        split=res("data", "{split}.json"),
    output:
        data=res("data", "{split}_whole_turns.json"),
    wildcard_constraints:
        split="D_A|D_B",
    params:
        python=how(PY),
        script=script("whole_turn_rows"),
        format="llava_cot" if SYNTHETIC else config["source"]["format"],
        source=how(source_file()),
        source_file={"source.path": source_file()},  # which file it reads: compared
        image_root=how(source_image_root(source_file())),
    log:
        res("logs", "whole_turns_{split}.log"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --source {params.source:q} --format {params.format:q}"
        " --image-root {params.image_root:q} --split {input.split:q}"
        " --output {output.data:q} > {log:q} 2>&1"


rule fitted_stage_one_data:
    """Stage I's data with its images scaled by the workflow (images.resample other than
    bicubic, which LLaMA-Factory cannot be told): each image the pixel limits change, once."""
    input:
        data=lambda wildcards: {
            "r0": annotated_split("D_A"),
            "sft": res("data", "sherlock_sft.json"),
            "perception": res("data", "perception.json"),
        }[wildcards.run],
    output:
        data=res("llamafactory", "{run}", "dataset.json"),
        images=directory(res("llamafactory", "{run}", "images")),
    wildcard_constraints:
        run="r0|sft|perception",
    params:
        python=how(PY),
        script=script("fit_stage_one_images"),
        pixels=image_pixel_options(),
    resources:
        **job_resources("gather"),
    threads: config["resources"]["gather"]["cpus_per_task"]
    log:
        res("logs", "fitted_stage_one_data_{run}.log"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --data {input.data:q} {params.pixels}"
        " --output {output.data:q} --images {output.images:q} > {log:q} 2>&1"


rule r0_config:
    """LLaMA-Factory YAML and dataset_info.json of the R0 run (full SFT of the base on D_A): what
    the model depends on; how it trains comes at launch (rule r0)."""
    localrule: True  # runs no model: never a cluster submission
    input:
        data=stage_one_data("r0", annotated_split("D_A")),
    output:
        yaml=res("llamafactory", "r0", "train.yaml"),
        info=res("llamafactory", "r0", "dataset_info.json"),
    params:
        python=how(PY),
        script=script("render_llamafactory"),
        model=how(base_model_path()),
        base_model=BASE_MODEL,
        template=config["base_model"]["template"],
        dataset_name="sherlock_d_a",
        hparams=training_results(sft_hparams("r0")),
        global_batch=global_batch(sft_hparams("r0")),
        seed=config["seed"],
        remote_code=remote_code_option(),
    log:
        log_file("r0_config"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --data {input.data:q} --name {params.dataset_name}"
        " --model {params.model:q} --template {params.template:q} --seed {params.seed:q}"
        " --hparams {params.hparams:q} {params.remote_code}"
        " --yaml {output.yaml:q} --info {output.info:q} > {log:q} 2>&1"


rule r0:
    """R0: the base model after SFT on D_A (full, or a LoRA adapter: rules/lora.smk merges it)."""
    input:
        yaml=rules.r0_config.output.yaml,
        info=rules.r0_config.output.info,
        data=rules.splits.output.d_a,
        base=base_model_input(),
    output:
        model=trained_output("r0"),
    resources:
        **training_resources(),
    threads: config["resources"]["train"]["cpus_per_task"]
    params:
        python=how(PY),
        script=script("train_llamafactory"),
        launch=training_launch(sft_hparams("r0"), model_name_or_path=base_model_path()),
        tracking=tracking_options,
    log:
        log_file("r0"),
    benchmark:
        benchmark_file("r0")
    conda:
        TRAIN_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --yaml {input.yaml:q} --model-dir {output.model:q} {params.launch} {params.tracking}"
            " > {log:q} 2>&1"
        )


rule sherlock_sft_data:
    """R0 answers every D_B question; two rows per record: (x → Y*) and (REFINE(x, y0) → Y*)."""
    input:
        model=res("models", "r0"),
        d_b=annotated_split("D_B"),
        shards=shard_inputs(res("data", "sherlock_sft.json")),
    output:
        data=res("data", "sherlock_sft.json"),
    params:
        python=how(PY_GEN),
        script=script("build_sherlock_sft"),
        # R0's raw y0 (generation.sherlock_sft.stop_at_conclusion false) is a generation option
        generation=generation_options("sherlock_sft") + conclusion_stop_option(),
        run=generation_run_options(),
        refine=refine_prompt_option("sft_data"),
        refine_prompt=refine_prompt_id("sft_data"),
        io=gather_io(output="data"),
    resources:
        **generation_resources(),
    threads: generation_resources()["cpus_per_task"]
    log:
        log_file("sherlock_sft_data"),
    benchmark:
        benchmark_file("sherlock_sft_data")
    conda:
        GENERATION_ENV
    shell:
        gpu_launch(
            "{params.script:q}"
            " --model {input.model:q} --d-b {input.d_b:q} {params.generation} {params.run}"
            " {params.refine} {params.io} > {log:q} 2>&1"
        )


use rule sherlock_sft_data as sherlock_sft_data_shard with:
    input:
        model=res("models", "r0"),
        d_b=annotated_split("D_B"),
    output:
        chunks=shard_output(res("data", "sherlock_sft.json")),
    params:
        io=shard_io("output"),
    resources:
        **job_resources("generate"),
    threads: config["resources"]["generate"]["cpus_per_task"]
    log:
        res("logs", "sherlock_sft_data_shard{shard}.log"),
    benchmark:
        res("benchmarks", "sherlock_sft_data_shard{shard}.tsv")


# Sherlock-SFT's run file: R0's with its own data and hyper-parameters (from the base model too).
use rule r0_config as sft_config with:
    localrule: True  # runs no model (not inherited through use rule)
    input:
        data=stage_one_data("sft", rules.sherlock_sft_data.output.data),
    output:
        yaml=res("llamafactory", "sft", "train.yaml"),
        info=res("llamafactory", "sft", "dataset_info.json"),
    params:
        dataset_name="sherlock_sft",
        hparams=training_results(sft_hparams("sherlock_sft")),
        global_batch=global_batch(sft_hparams("sherlock_sft")),
    log:
        log_file("sft_config"),


# Sherlock-SFT: the base model after SFT on sherlock_sft.json (full, or a LoRA adapter).
use rule r0 as sft with:
    input:
        yaml=rules.sft_config.output.yaml,
        info=rules.sft_config.output.info,
        data=rules.sherlock_sft_data.output.data,
        base=base_model_input(),
    output:
        model=trained_output("sft"),
    params:
        launch=training_launch(sft_hparams("sherlock_sft"), model_name_or_path=base_model_path()),
    log:
        log_file("sft"),
    benchmark:
        benchmark_file("sft")


if PERCEPTION:

    # The perception stage: the random tiny model fine-tuned (LLaMA-Factory, sft.perception) to
    # describe scenes cell by cell; the result is the base model every stage starts from.
    use rule r0_config as perception_config with:
        localrule: True  # runs no model (not inherited through use rule)
        input:
            data=stage_one_data("perception", rules.perception_data.output.data),
        output:
            yaml=res("llamafactory", "perception", "train.yaml"),
            info=res("llamafactory", "perception", "dataset_info.json"),
        params:
            model=how(res("models", "base_init")),
            base_model="tiny",
            dataset_name="sherlock_perception",
            hparams=training_results(sft_hparams("perception")),
            global_batch=global_batch(sft_hparams("perception")),
        log:
            log_file("perception_config"),

    use rule r0 as perception with:
        input:
            yaml=rules.perception_config.output.yaml,
            info=rules.perception_config.output.info,
            data=rules.perception_data.output.data,
            base=rules.tiny_model.output.model,
        output:
            model=directory(res("models", "base")),
        params:
            launch=training_launch(
                sft_hparams("perception"), model_name_or_path=res("models", "base_init")
            ),
        log:
            log_file("perception"),
        benchmark:
            benchmark_file("perception")
