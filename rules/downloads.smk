# Opt-in downloads (config `downloads`): the plan shows them as jobs before any job that reads
# what they fetch. They run where Snakemake runs (localrule: a login node has the network, a
# cluster node may not). What they fetch is compared by what it is (a hub id), not by where it
# lies, so turning downloads on or off reruns nothing (rules/common.smk, "Reruns follow results").

if DOWNLOAD_SOURCE:

    rule download_source:
        """LLaVA-CoT-100k from the Hugging Face hub: its records into source.path, its split
        image archive joined and unpacked into source.image_root (sherlock.downloads)."""
        localrule: True
        output:
            records=config["source"]["path"],
        params:
            python=how(PY),
            script=script("download"),
            repo=LLAVA_COT_HUB,
            image_root=how(config["source"]["image_root"]),
        log:
            log_file("download_source"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} llava-cot --repo {params.repo:q}"
            " --jsonl {output.records:q} --image-root {params.image_root:q} > {log:q} 2>&1"


if DOWNLOADED_MODELS:

    rule download_model:
        """A hub model (base_model.path, a judge's model) into downloads.models_dir/<org>/<name>;
        every job that loads it reads it from there (sherlock.downloads)."""
        localrule: True
        output:
            model=directory(os.path.join(DOWNLOADS["models_dir"], "{org}", "{name}")),
        wildcard_constraints:
            org="|".join(re.escape(repo.split("/")[0]) for repo in DOWNLOADED_MODELS),
            name="|".join(re.escape(repo.split("/")[1]) for repo in DOWNLOADED_MODELS),
        params:
            python=how(PY),
            script=script("download"),
            repo=lambda wildcards: f"{wildcards.org}/{wildcards.name}",
        log:
            res("logs", "download_model_{org}_{name}.log"),
        conda:
            TRAIN_ENV
        shell:
            "{params.python} {params.script:q} model --repo {params.repo:q}"
            " --output {output.model:q} > {log:q} 2>&1"
