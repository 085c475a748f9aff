# Sharded generation's one marker per generating step (rules/common.smk, shard_inputs): a step's
# job waits for it whatever generation.shards is, so changing the count rebuilds nothing.


rule shards_done:
    """Every shard of a generating step has saved its chunks (none to wait for when a step is
    one job); a marker, deleted once the step's job has gathered them."""
    localrule: True
    input:
        lambda wildcards: [shard_folder(wildcards.main, shard) for shard in range(SHARDS)]
        if SHARDS > 1
        else [],
    output:
        temp(touch(f"{{main}}{SHARDS_DONE}")),
    wildcard_constraints:
        main=r".+\.json",
    log:
        res("logs", "shards_done", "{main}.log"),
    conda:
        TRAIN_ENV
    shell:
        "echo every shard has saved its chunks > {log:q}"
