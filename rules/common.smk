# Config validation, path helpers and resource tags shared by every rule.
import json
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the `sherlock` package, installed or not

from snakemake.settings.types import DeploymentMethod

from sherlock.config import (
    ENVIRONMENT_FILES,
    ConfigError,
    generation_stack,
    interpreter,
    merged,
    put_interpreter_on_path,
    put_package_on_pythonpath,
    stack_problem,
    validate_config,
)
from sherlock.config_paths import check_paths, workflow_file
from sherlock.data.images import LLAMAFACTORY_MAX_PIXELS, LLAMAFACTORY_MIN_PIXELS
from sherlock.evaluation.benchmark_config import (
    check_benchmark_files,
    judge_problems,
    resolved_benchmarks,
)

try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
    # Every model, data file and DeepSpeed config exists (sherlock.config_paths), before any job.
    check_paths(config, workflow.basedir)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RESULTS = config["results_dir"]
ITERATIONS = list(range(1, config["online"]["iterations"] + 1))
TINY_BASE = config["base_model"]["path"] == "tiny"
SYNTHETIC = config["source"]["format"] == "synthetic"
# The tiny base learns to read its image tokens (scenes described cell by cell) before Stage I.
PERCEPTION = TINY_BASE and config["tiny_model"]["perception_images"] > 0


wildcard_constraints:
    k=r"\d+",


def res(*parts):
    """A path under this run's results folder."""
    return os.path.join(RESULTS, *parts)


def log_file(rule_name):
    return res("logs", f"{rule_name}.log")


def benchmark_file(rule_name):
    return res("benchmarks", f"{rule_name}.tsv")


# Jobs call `python` (params.python: PY or PY_GEN): inside a conda env (--sdm conda) that is the
# env's interpreter; else the one named in python.train / python.generate, or by default the one
# running Snakemake (a venv never activated included), whose folder goes first on the PATH the
# jobs inherit. Every job imports `sherlock` from this checkout (PYTHONPATH), so the envs need
# only third-party packages.
put_interpreter_on_path()
put_package_on_pythonpath(workflow.basedir)
CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
try:
    PY = interpreter(config, "train", CONDA)
    PY_GEN = interpreter(config, "generate", CONDA)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
if problem := stack_problem(config, CONDA):
    raise WorkflowError(problem)
# conda: directives are relative to the rule files (rules/).
TRAIN_ENV = os.path.join("..", ENVIRONMENT_FILES["train"])
GENERATION_ENV = os.path.join("..", ENVIRONMENT_FILES[generation_stack(config)])


def gpu_launch(command):
    """The shell command of a job that may run a model: claim its GPUs (resources.gpu, none on a
    CPU run; sherlock.runtime.gpu_slots), then run ``command`` with the stack's interpreter."""
    claim = "{params.python} -m sherlock.runtime.gpu_slots --count {resources.gpu} --"
    return f"{claim} {{params.python}} {command}"


def script(name):
    """A workflow script, as a path relative to the working directory when possible."""
    path = Path(workflow.basedir) / "workflow_scripts" / f"{name}.py"
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def job_resources(kind):
    """Resource tags of a job kind ('train' or 'generate') from config."""
    spec = config["resources"][kind]
    tags = {"gpu": spec["gpu"], "mem_mb": spec["mem_mb"], "runtime": spec["runtime"],
            "cpus_per_task": spec["cpus_per_task"]}
    if spec.get("slurm_partition"):
        tags["slurm_partition"] = spec["slurm_partition"]
    return tags


def training_resources():
    """A training job's tags. On several nodes it is one SLURM job of `nodes` nodes whose command
    runs once and starts a launcher per node with srun (sherlock.runtime.multinode): the plugin's `mpi`
    job form (no srun around the command) with one task per node, and the GPUs asked per node
    as a GRES (the plugin's `gpu` would be a total); gpu=0 also keeps sherlock.runtime.gpu_slots out of
    SLURM's way (it never touches SLURM's devices anyway)."""
    tags = job_resources("train")
    nodes = config["resources"]["train"].get("nodes", 1)
    if nodes == 1:
        return tags
    return {
        **tags,
        "gpu": 0,
        **({"gres": f"gpu:{tags['gpu']}"} if tags["gpu"] else {}),
        "nodes": nodes,
        "tasks": nodes,
        "tasks_per_gpu": 0,  # else the plugin turns `tasks` into --ntasks-per-gpu
        "mpi": "srun",
    }


def base_model_path():
    return res("models", "base") if TINY_BASE else config["base_model"]["path"]


def base_model_input():
    """The base model as a file dependency when it is built here or is a local folder."""
    if TINY_BASE:
        return res("models", "base")
    path = config["base_model"]["path"]
    return path if os.path.isdir(path) else []


def with_workflow_files(hparams):
    """``hparams`` with its DeepSpeed (or FSDP) config read from the workflow folder when
    relative, so a run from another directory (--directory) finds config/deepspeed/*.json."""
    files = {
        key: workflow_file(hparams[key], workflow.basedir)
        for key in ("deepspeed", "fsdp_config")
        if hparams.get(key)
    }
    return {**hparams, **files}


def sft_hparams(run):
    return with_workflow_files(merged(config["sft"]["common"], config["sft"][run]))


def source_file():
    """The source data file: the synthetic set built here, or the user's file."""
    return res("synthetic", "train.jsonl") if SYNTHETIC else config["source"]["path"]


def source_image_root(source):
    return os.path.dirname(source) if SYNTHETIC else config["source"]["image_root"]


def offline_source_split():
    """The annotated split the offline pairs come from (the paper re-uses D_A)."""
    return res("data", "D_A.json" if config["offline"]["source_split"] == "d_a" else "D_B.json")


def preference_hparams(stage):
    return with_workflow_files(merged(config["preference"]["common"], config["preference"][stage]))


def pair_fit_options(stage):
    """What a pair-building job needs to leave out the records the training of ``stage``
    ('offline' or 'online') could not fit: its cutoff_len and the refine prompt."""
    cutoff = preference_hparams(stage).get("cutoff_len")
    option = f"--cutoff-len {cutoff}" if cutoff else ""
    return f"{option} {refine_prompt_option()}".strip()


def refine_prompt_option():
    refine = config["prompts"]["refine"]
    return f"--refine-prompt {shlex.quote(refine)}" if refine else ""


def image_pixel_options():
    """The one image size of every stage: sft.common's limits (LLaMA-Factory's defaults when
    null), which Stage I trains at, every generating job answers at (images.fit_pixels) and the
    preference stages train at (their run files)."""
    pixels = config["sft"]["common"]
    return (
        f"--image-min-pixels {pixels.get('image_min_pixels') or LLAMAFACTORY_MIN_PIXELS}"
        f" --image-max-pixels {pixels.get('image_max_pixels') or LLAMAFACTORY_MAX_PIXELS}"
    )


def generation_options(sampling):
    """The generation options of a generating job; ``sampling`` names a generation.* section.

    One string, so a change to any of them reruns the job (Snakemake's params trigger).
    """
    gen = config["generation"]
    options = (
        f"--backend {gen['backend']} --batch-size {gen['batch_size']}"
        f" --chunk-size {gen['chunk_size']}"
        f" --max-new-tokens {gen['max_new_tokens']} --dtype {gen['dtype']}"
        f" --temperature {gen[sampling]['temperature']} --top-p {gen[sampling]['top_p']}"
        f" --seed {config['seed']}"
        f" {image_pixel_options()}"
        + (" --trust-remote-code" if config["base_model"]["trust_remote_code"] else "")
    )
    return f"{options}{vllm_options()}"


def vllm_options():
    """The vLLM engine's settings (generation.vllm) when generation.backend is vllm, else none;
    the generating jobs and the llm judge share them."""
    gen = config["generation"]
    if gen["backend"] != "vllm":
        return ""
    options = f" --gpu-memory-utilization {gen['vllm']['gpu_memory_utilization']}"
    if gen["vllm"]["max_model_len"]:
        options += f" --max-model-len {gen['vllm']['max_model_len']}"
    return options


def policy_for(wildcards):
    """M_{k-1}: the Offline model for k = 1, else the model of iteration k - 1."""
    k = int(wildcards.k)
    return res("models", "offline") if k == 1 else res("models", f"iter{k - 1}")


LLM_JUDGE = config["online"]["judge"]["kind"] == "llm"
TINY_JUDGE = LLM_JUDGE and config["online"]["judge"]["model"] == "tiny"
# The llm judge is a model run by the generation backend, so it runs in that backend's stack;
# the exact judge compares strings in the training stack.
JUDGE_PY = PY_GEN if LLM_JUDGE else PY
JUDGE_ENV = GENERATION_ENV if LLM_JUDGE else TRAIN_ENV


def judge_options():
    """The judge's options; the llm judge runs on the generation backend (docs/method.md §7.2)."""
    judge = config["online"]["judge"]
    options = f"--judge {judge['kind']}"
    if judge["trust_remote_code"]:
        options += " --trust-remote-code"
    if LLM_JUDGE:
        gen = config["generation"]
        options += (
            f" --judge-model {shlex.quote(judge_model_path())}"
            f" --judge-batch-size {judge['batch_size']} --judge-chunk-size {judge['chunk_size']}"
            f" --judge-max-new-tokens {judge['max_new_tokens']} --dtype {judge['dtype']}"
            f" --backend {gen['backend']}{vllm_options()}"
        )
    return options


def judge_model_path():
    return res("models", "judge") if TINY_JUDGE else config["online"]["judge"]["model"]


def judge_model_input():
    """The llm judge's model as a file dependency when it is built here or a local folder."""
    if TINY_JUDGE:
        return res("models", "judge")
    judge = config["online"]["judge"]
    return judge["model"] if judge["kind"] == "llm" and os.path.isdir(judge["model"]) else []


# Evaluation (rules/evaluate.smk): which checkpoints, on which benchmarks.
EVALUATION = config["evaluation"]
CHECKPOINTS = EVALUATION["checkpoints"] or [
    "base", "r0", "sft", "offline", *(f"iter{k}" for k in ITERATIONS)
]
TRAINED = ["r0", "sft", "offline", *(f"iter{k}" for k in ITERATIONS)]
# A seed study of the demo (benchmarks/demo_study.py) shown in the report beside this run's page.
SEED_STUDY = (
    workflow_file(EVALUATION["seed_study"], workflow.basedir) if EVALUATION["seed_study"] else None
)
HELDOUT = {"path": res("eval", "benchmarks", "heldout.jsonl"), "image_root": None,
           "format": "jsonl", "metric": "accuracy"}
BENCHMARKS = {
    **({"heldout": HELDOUT} if SYNTHETIC else {}),
    **resolved_benchmarks(EVALUATION),
}
# A listed benchmark file that is not there stops the run here, before any job, saying where to
# get it (a VLMEvalKit TSV: how VLMEvalKit downloads it).
if problems := check_benchmark_files(
    {name: spec for name, spec in BENCHMARKS.items() if name != "heldout" or not SYNTHETIC}
) + judge_problems(BENCHMARKS, EVALUATION["judge"]):
    raise WorkflowError("evaluation benchmarks:\n  " + "\n  ".join(problems))
VLMEVALKIT_BENCHMARKS = [n for n, spec in BENCHMARKS.items() if spec["format"] == "vlmevalkit"]
JUDGED_BENCHMARKS = [n for n, spec in BENCHMARKS.items() if spec["metric"] == "judge"]


def benchmark_pattern(names):
    """A wildcard constraint matching exactly these benchmark names (none: matches nothing)."""
    return "|".join(re.escape(name) for name in names) or r"(?!)"


def benchmark_items(wildcards):
    """The benchmark JSONL an evaluate job reads: the file itself, or a VLMEvalKit TSV's
    conversion (rule vlmevalkit_benchmark)."""
    if BENCHMARKS[wildcards.benchmark]["format"] == "vlmevalkit":
        return res("eval", "benchmarks", f"{wildcards.benchmark}.jsonl")
    return BENCHMARKS[wildcards.benchmark]["path"]


def conversion_input(wildcards):
    """A VLMEvalKit benchmark's conversion summary (its malformed rows), else nothing."""
    if BENCHMARKS[wildcards.benchmark]["format"] == "vlmevalkit":
        return res("eval", "benchmarks", f"{wildcards.benchmark}_conversion.json")
    return []


def benchmark_scores(benchmark, checkpoint):
    """The scores of one checkpoint on one benchmark: the judged ones for open answers."""
    kind = "judged_scores" if benchmark in JUDGED_BENCHMARKS else "scores"
    return res("eval", benchmark, f"{checkpoint}_{kind}.json")


def evaluation_judge_options():
    """The open-answer judge's options (evaluation.judge), run on the generation backend."""
    judge = EVALUATION["judge"]
    options = (
        f"--judge-model {shlex.quote(str(judge['model']))} --judge-batch-size {judge['batch_size']}"
        f" --judge-max-new-tokens {judge['max_new_tokens']} --dtype {judge['dtype']}"
        f" --backend {config['generation']['backend']}{vllm_options()} --seed {config['seed']}"
    )
    return options + (" --trust-remote-code" if judge["trust_remote_code"] else "")


def checkpoint_path(name):
    """The folder (or hub id) of a checkpoint named as in evaluation.checkpoints."""
    return base_model_path() if name == "base" else res("models", name)


def checkpoint_input(wildcards):
    """A checkpoint as a file dependency (the base model only when it is a local folder)."""
    return base_model_input() if wildcards.checkpoint == "base" else res("models", wildcards.checkpoint)


def image_root_option(wildcards):
    """--image-root of a benchmark whose image paths are not relative to its own folder (a
    VLMEvalKit file's image_path cells; its converted JSONL points at its pictures itself)."""
    spec = BENCHMARKS[wildcards.benchmark]
    root = spec.get("image_root")
    return f"--image-root {shlex.quote(root)}" if root and spec["format"] == "jsonl" else ""


def training_launch_options():
    """Whether a training rerun continues from its last intermediate checkpoint (config), and
    the nodes it trains on when more than one."""
    options = "--resume" if config["checkpointing"]["resume"] else "--no-resume"
    nodes = config["resources"]["train"].get("nodes", 1)
    return options + (f" --nodes {nodes}" if nodes > 1 else "")


def tracking_options(wildcards, output):
    """--report-to and --tracking-dir of a training (config tracking): its live curves go to
    <results>/tracking/<model folder name> (r0, sft, offline, iter1, ...). A function of the
    output, which Snakemake does not count as a params change: switching tracking on or off
    retrains nothing (sherlock.runtime.tracking)."""
    report_to = config["tracking"]["report_to"]
    if report_to == "none":
        return ""
    folder = res("tracking", os.path.basename(os.path.normpath(output.model)))
    return f"--report-to {report_to} --tracking-dir {shlex.quote(folder)}"


def remote_code_option():
    """--trust-remote-code for runs of the base model's family, only when the config opts in."""
    return "--trust-remote-code" if config["base_model"]["trust_remote_code"] else ""


def perturbed_images(path):
    """The folder of perturbed images a pair-building job writes: no later job reads it, so it
    is deleted as soon as the job ends unless intermediates.keep_perturbed_images is on."""
    folder = directory(path)
    return folder if config["intermediates"]["keep_perturbed_images"] else temp(folder)


# Sharded generation (generation.shards > 1): each generating step runs as `shards` jobs of one
# GPU's worth each (`<rule>_shard`), every one generating its share of the chunks into
# `<main output>.shards/<i>`; the step's own job then gathers those chunks, without loading the
# model, and writes the outputs exactly as one unsharded job would (sherlock.generation.resumable).
SHARDS = config["generation"]["shards"]


wildcard_constraints:
    shard=r"\d+",


def shard_folder(main_output, shard="{shard}"):
    return f"{main_output}.shards/{shard}"


def shard_output(main_output):
    """A shard job's folder: temporary, deleted once the job gathering it has succeeded."""
    return temp(directory(shard_folder(main_output)))


def shard_inputs(main_output):
    """The shard folders a generating job gathers (none when unsharded)."""
    if SHARDS == 1:
        return []
    return lambda wildcards: [
        shard_folder(main_output.format(**wildcards), shard) for shard in range(SHARDS)
    ]


def generation_resources():
    """A generating job's tags: one GPU's worth when it generates; when it only gathers the
    shards' chunks (and, for the pairs, measures them against cutoff_len with the processor),
    loading no model, the light resources.gather ones."""
    if SHARDS == 1:
        return job_resources("generate")
    return job_resources("gather")


def gather_io(**flags):
    """params.io of a generating job: `--<flag> <its output>` for each flag (flag → output name),
    and the shard folders to gather when sharded."""

    def io(wildcards, input, output):
        words = [f"--{flag} {shlex.quote(output[name])}" for flag, name in flags.items()]
        if SHARDS > 1:
            words.append("--saved-chunks " + " ".join(map(shlex.quote, input.shards)))
        return " ".join(words)

    return io


def shard_io(*flags):
    """params.io of a shard job: its share of the chunks (and images) into its folder; the
    script's own outputs are not written by a shard, so they point into that folder too."""

    def io(wildcards, output):
        folder = output.chunks
        words = [
            f"--{flag} {shlex.quote(os.path.join(folder, 'images' if flag == 'image-dir' else flag))}"
            for flag in flags
        ]
        words.append(f"--shard {wildcards.shard} --shards {SHARDS} --shard-dir {shlex.quote(folder)}")
        return " ".join(words)

    return io
