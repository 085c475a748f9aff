# Source data → validated records → D_A / D_B / pool_k splits; the synthetic default dataset.

rule synthetic_data:
    """The embedded default dataset: coloured shapes in the LLaVA-CoT JSONL format."""
    localrule: True  # runs no model: never a cluster submission
    output:
        train=res("synthetic", "train.jsonl"),
        test=res("synthetic", "test.jsonl"),
        images=directory(res("synthetic", "images")),
    params:
        python=how(PY),
        script=script("build_synthetic"),
        n_train=config["synthetic"]["n_train"],
        n_test=config["synthetic"]["n_test"],
        image_size=config["synthetic"]["image_size"],
        seed=config["seed"],
        heldout=config["synthetic"]["heldout"],
        out_dir=lambda wildcards, output: os.path.dirname(output.train),
    log:
        log_file("synthetic_data"),
    benchmark:
        benchmark_file("synthetic_data")
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --out-dir {params.out_dir:q}"
        " --n-train {params.n_train:q} --n-test {params.n_test:q}"
        " --image-size {params.image_size:q} --seed {params.seed:q} --heldout {params.heldout}"
        " > {log:q} 2>&1"


if PERCEPTION:

    rule perception_data:
        """Synthetic scenes of their own stream, each described cell by cell, for the perception
        stage of the tiny base."""
        localrule: True  # runs no model: never a cluster submission
        output:
            data=res("data", "perception.json"),
            images=directory(res("synthetic", "perception_images")),
        params:
            python=how(PY),
            script=script("build_perception_data"),
            n=config["tiny_model"]["perception_images"],
            image_size=config["synthetic"]["image_size"],
            seed=config["seed"],
        log:
            log_file("perception_data"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} --output {output.data:q}"
            " --image-dir {output.images:q} --n {params.n} --image-size {params.image_size}"
            " --seed {params.seed} > {log:q} 2>&1"


rule source_records:
    """Read and validate the source; invalid records go to rejects.jsonl with their reason."""
    input:
        source=source_input(),
    output:
        records=res("data", "records.jsonl"),
        rejects=res("data", "rejects.jsonl"),
        summary=res("data", "source_summary.json"),
    params:
        python=how(PY),
        script=script("prepare_records"),
        format="llava_cot" if SYNTHETIC else config["source"]["format"],
        source=how(source_file()),
        # which file it reads (a file you give is known by its path): compared
        source_file={"source.path": source_file()},
        image_root=how(source_image_root(source_file())),
        max_invalid_fraction=config["source"]["max_invalid_fraction"],
        max_image_pixels=config["source"]["max_image_pixels"],
    resources:
        **job_resources("gather"),
    log:
        log_file("source_records"),
    benchmark:
        benchmark_file("source_records")
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --source {params.source:q} --format {params.format:q}"
        " --image-root {params.image_root:q}"
        " --max-invalid-fraction {params.max_invalid_fraction:q}"
        " --max-image-pixels {params.max_image_pixels:q}"
        " --records {output.records:q} --rejects {output.rejects:q} --summary {output.summary:q}"
        " 2>&1 | tee {log:q}"


rule splits:
    """Seeded, pairwise-disjoint D_A, D_B and one unlabeled pool per online iteration."""
    localrule: True  # runs no model: never a cluster submission
    input:
        records=rules.source_records.output.records,
    output:
        d_a=res("data", "D_A.json"),
        d_b=res("data", "D_B.json"),
        pools=expand(res("data", "pool_{k}.json"), k=ITERATIONS),
    params:
        python=how(PY),
        script=script("make_splits"),
        d_a=config["splits"]["d_a"],
        d_b=config["splits"]["d_b"],
        pool=config["splits"]["pool"],
        iterations=config["online"]["iterations"],
        seed=config["seed"],
        pool_pattern=lambda wildcards: res("data", "pool_{k}.json"),
    log:
        log_file("splits"),
    conda:
        TRAIN_ENV
    shell:
        "{params.python} {params.script:q} --records {input.records:q}"
        " --d-a {params.d_a:q} --d-b {params.d_b:q} --pool {params.pool:q}"
        " --iterations {params.iterations:q} --seed {params.seed:q}"
        " --out-d-a {output.d_a:q} --out-d-b {output.d_b:q} --pool-pattern {params.pool_pattern:q}"
        " 2>&1 | tee {log:q}"
