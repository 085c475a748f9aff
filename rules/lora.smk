# LoRA stages (finetuning_type: lora; docs/trainer.md, "LoRA"): the training of a stage writes
# its adapter, models/<stage>_adapter/, and the job below writes models/<stage>/, the plain model
# every later step reads (generation, the next stage's start and reference, evaluation), as a
# full stage's training writes it. Without a LoRA stage the rule does not exist.


if LORA_STAGES:

    rule merge_adapter:
        """A LoRA stage's merged model: the adapters of the LoRA stages from the chain's root up to
        this one, merged in order into the root (LLaMA-Factory's export, on the CPU)."""
        input:
            root=lambda wildcards: merge_root(wildcards.stage)[1],
            adapters=lambda wildcards: merge_chain(wildcards.stage)[1],
        output:
            model=merged_output(res("models", "{stage}")),
        wildcard_constraints:
            stage="|".join(LORA_STAGES),
        params:
            python=how(PY),
            script=script("merge_adapters"),
            root=how(lambda wildcards: merge_root(wildcards.stage)[0]),
            # what the merge starts from (compared): the base model's identity, or a model
            # built here (an input)
            root_model=lambda wildcards: merge_root_identity(wildcards.stage),
            template=config["base_model"]["template"],
            remote_code=remote_code_option(),
        resources:
            # the train job's memory holds the model; no GPU: the export runs on the CPU
            **{**job_resources("train"), "gpu": 0},
        threads: config["resources"]["train"]["cpus_per_task"]
        log:
            res("logs", "merge_{stage}.log"),
        benchmark:
            res("benchmarks", "merge_{stage}.tsv")
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} --model {params.root:q} --adapters {input.adapters:q}"
            " --template {params.template:q} {params.remote_code} --output {output.model:q}"
            " > {log:q} 2>&1"
