# The base model: a local folder or hub id from config, or a tiny model built on the spot.


rule tiny_model:
    """A random-initialised tiny VLM (tiny_model.architecture) with a BPE tokenizer trained on
    the synthetic corpus."""
    input:
        corpus=rules.synthetic_data.output.train,
    output:
        # With a perception stage (rules/sft.smk) this is its starting point, not the base.
        model=directory(res("models", "base_init" if PERCEPTION else "base")),
    params:
        python=how(PY),
        script=script("build_tiny_model"),
        seed=config["seed"],
        image_size=config["synthetic"]["image_size"],
        size=config["tiny_model"],
    resources:
        **job_resources("gather"),
    log:
        log_file("tiny_model"),
    benchmark:
        benchmark_file("tiny_model")
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --corpus {input.corpus:q} --out-dir {output.model:q}"
        " --seed {params.seed:q} --image-size {params.image_size:q}"
        " --architecture {params.size[architecture]}"
        " --vocab-size {params.size[vocab_size]} --hidden-size {params.size[hidden_size]}"
        " --num-layers {params.size[num_layers]} --num-heads {params.size[num_heads]}"
        " --vision-depth {params.size[vision_depth]}"
        " --vision-embed-dim {params.size[vision_embed_dim]}"
        " --image-feature-scale {params.size[image_feature_scale]} > {log:q} 2>&1"


rule tiny_judge:
    """A tiny text model trained to answer the self-consistency prompt (online.judge.model: tiny)."""
    input:
        records=rules.synthetic_data.output.train,
    output:
        model=directory(res("models", "judge")),
    params:
        python=how(PY),
        script=script("build_tiny_judge"),
        seed=config["seed"],
        size=config["tiny_judge"],
        vocab_size=config["tiny_model"]["vocab_size"],
    resources:
        **job_resources("gather"),
    log:
        log_file("tiny_judge"),
    benchmark:
        benchmark_file("tiny_judge")
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --records {input.records:q} --out-dir {output.model:q}"
        " --seed {params.seed:q} --steps {params.size[steps]} --vocab-size {params.vocab_size}"
        " --hidden-size {params.size[hidden_size]} --num-layers {params.size[num_layers]}"
        " > {log:q} 2>&1"
