# Config validation, path helpers and resource tags shared by every rule.
#
# ── Reruns follow results (docs/configuration.md, "What reruns") ─────────────────────────────
# Snakemake reruns a job when one of its compared params, its list of input paths or its rule's
# shell text changes. What a job computes (data, seeds, hyper-parameters, model, prompts, the
# command it runs) must decide that; how and where it runs never may. The rules all follow this:
#   1. A value that decides what the job computes is a plain param: `seed=config["seed"]`.
#   2. A value that only says how or where the job runs (an interpreter, a script's or scratch
#      folder's path, the shard count, chunk sizes, workers, checkpointing, tracking, GPU layout,
#      a per-device batch at an equal global batch) is wrapped: `python=how(PY)`. how() turns
#      it into a function of `resources`, which Snakemake counts as derived and never compares.
#      script() and the *_run_options()/launch helpers below return such values already.
#   3. A model folder or prompt file the user gives is compared by identity(path) (names,
#      sizes, times: moving it reruns nothing); its path travels with how(). A file under
#      results_dir is an input as usual (a relative path, the same wherever the run lies).
#   4. The shell text holds no config value: only {params.*}, {input.*}, {output.*}, ...
#   5. Lists of input paths are not compared: the profiles (profiles/default, profiles/slurm)
#      set rerun-triggers without `input`, since a gathering job's list of shard folders follows
#      the shard count. Inputs are still compared by their times; so a config choice that
#      selects WHICH file a job reads is also a plain param of that job (e.g. offline_prefs'
#      `source_split`, accuracy_table's `benchmarks`), or changing it would rerun nothing.
#   6. A training's run file (the *_config rules) holds what the model depends on; how it runs
#      (scratch folder, DeepSpeed, per-device batch and accumulation, workers, checkpointing)
#      reaches it at launch (--launch JSON, training_launch()). A new sft/preference key that
#      only says how a training runs goes into sherlock.reruns.EXECUTION_KEYS.
#   7. Anything a rule reads from outside results_dir (data, a model, a file) is listed in
#      sherlock.plan_check.missing_inputs with the rules that need it, and is an input only when
#      it is there: the plan works without it and a run needing it stops before its first job.
import glob
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
    finetuning_keys,
    generation_stack,
    interpreter,
    is_lora,
    merged,
    put_interpreter_on_path,
    put_package_on_pythonpath,
    validate_config,
)
from sherlock.ablations.stages import StageRouter
from sherlock.config_paths import workflow_file
from sherlock.data.images import LLAMAFACTORY_MAX_PIXELS, LLAMAFACTORY_MIN_PIXELS
from sherlock.data.prompts import REFINE_WORDINGS, refine_choice
from sherlock.downloads import LLAVA_COT_HUB
from sherlock.evaluation.benchmark_config import judge_problems, resolved_benchmarks
from sherlock.gpucheck.price import print_dry_run_estimate
from sherlock.node import apply_layout, describe, resolve_batch
from sherlock.plan_check import missing_inputs, plan_warning, show_once, stop_message
from sherlock.reruns import compared_training, identity, launch_settings, split_training
from sherlock.runtime.resumable_training import checkpoint_keys

# A dry run's plan opens with the run's estimated GPU-hours (sherlock.gpucheck.price; stderr).
print_dry_run_estimate(config)
try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
    # node.gpus → GPU tags, shard count (sherlock.node); rules read the resolved numbers.
    LAYOUT = apply_layout(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


def how(value):
    """A param that says how or where a job runs, never compared by Snakemake (a function of
    `resources` is "derived"). ``value``: a constant, or a function of any of wildcards, input,
    output, threads, resources (called with the ones it names)."""
    if not callable(value):
        return lambda wildcards, resources: value
    import inspect

    names = set(inspect.signature(value).parameters)

    def derived(wildcards, input, output, threads, resources):
        given = dict(wildcards=wildcards, input=input, output=output, threads=threads,
                     resources=resources)  # fmt: skip
        return value(**{name: given[name] for name in names})

    return derived


RESULTS = config["results_dir"]
ITERATIONS = list(range(1, config["online"]["iterations"] + 1))
TINY_BASE = config["base_model"]["path"] == "tiny"
SYNTHETIC = config["source"]["format"] == "synthetic"
# The tiny base learns to read its image tokens (scenes described cell by cell) before Stage I.
PERCEPTION = TINY_BASE and config["tiny_model"]["perception_images"] > 0


wildcard_constraints:
    k=r"\d+",


# With stages_dir: where each stage's files go (set below, once the checkpoints are known).
STAGES = None


def res(*parts):
    """A path under this run's results folder; with stages_dir, under the folder of the stage
    that writes it, named by what that stage depends on (sherlock.ablations.stages)."""
    if STAGES is not None:
        return STAGES.path(*parts)
    return os.path.join(RESULTS, *parts)


def run_log_files():
    """Every job log of this run (with stages_dir, those of its stages' folders too)."""
    folders = STAGES.stage_folders().values() if STAGES is not None else [RESULTS]
    return [path for folder in folders for path in glob.glob(os.path.join(folder, "logs", "*.log"))]


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


def _interpreter(role):
    """The interpreter of ``role``; one that is not there yet is a missing input of the jobs
    that use it (sherlock.plan_check), so the plan still works."""
    try:
        return interpreter(config, role, CONDA)
    except ConfigError:
        return shlex.quote(config["python"][role])


PY = _interpreter("train")
PY_GEN = _interpreter("generate")
# conda: directives are relative to the rule files (rules/).
TRAIN_ENV = os.path.join("..", ENVIRONMENT_FILES["train"])
GENERATION_ENV = os.path.join("..", ENVIRONMENT_FILES[generation_stack(config)])


def gpu_launch(command):
    """The shell command of a job that may run a model: claim its GPUs (resources.gpu, none on a
    CPU run; sherlock.runtime.gpu_slots), then run ``command`` with the stack's interpreter."""
    claim = "{params.python} -m sherlock.runtime.gpu_slots --count {resources.gpu} --"
    return f"{claim} {{params.python}} {command}"


def script(name):
    """A workflow script, as a path relative to the working directory when possible; a how()
    value: where the checkout lies is not what a job computes (the script's name is in the rule's
    shell text through the rule it belongs to)."""
    path = Path(workflow.basedir) / "workflow_scripts" / f"{name}.py"
    try:
        return how(os.path.relpath(path))
    except ValueError:
        return how(str(path))


def job_resources(kind):
    """Resource tags of a job kind ('train', 'generate' or 'gather') from config (GPU counts as
    node.gpus resolved them). 'gather' also serves the other submitted jobs that load no big
    model (source records, the tiny builders), so no submitted job relies on a profile's
    default-resources."""
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


# Opt-in downloads (rules/downloads.smk): hub models into downloads.models_dir, LLaVA-CoT-100k
# into source.image_root. A model fetched once is used from its folder from then on.
DOWNLOADS = config["downloads"]
DOWNLOAD_SOURCE = DOWNLOADS["source"] and config["source"]["format"] == "llava_cot"


def hub_model(value):
    """Whether a model setting is a Hugging Face hub id (org/name) and no local folder."""
    return bool(value) and value != "tiny" and not os.path.isdir(value) and bool(
        re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", value)
    )


def downloaded_model(value):
    """The folder a hub model is (or will be) downloaded into, or None when it is read from the
    hub (or the local cache) by the jobs themselves."""
    if not hub_model(value):
        return None
    folder = os.path.join(DOWNLOADS["models_dir"], value)
    return folder if DOWNLOADS["models"] or os.path.isdir(folder) else None


def model_path(value):
    """Where the jobs load a configured model from."""
    return downloaded_model(value) or value


def model_identity(value):
    """A configured model as Snakemake compares it: a hub id itself (downloaded or not), a
    local folder by identity() (not by its path)."""
    if value is None or value == "tiny" or hub_model(value):
        return value
    return identity(value)


def model_input(value):
    """A configured model as a file dependency: only its download (a local folder is compared
    by identity, not listed as an input)."""
    return downloaded_model(value) or []


def base_model_path():
    return res("models", "base") if TINY_BASE else model_path(config["base_model"]["path"])


def base_model_input():
    """The base model as a file dependency when it is built or downloaded here."""
    return res("models", "base") if TINY_BASE else model_input(config["base_model"]["path"])


BASE_MODEL = "tiny" if TINY_BASE else model_identity(config["base_model"]["path"])


def _resolved(hparams, where):
    try:
        return resolve_batch(hparams, LAYOUT.processes, where)
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


def sft_hparams(run):
    """A Stage I run's keys (LoRA's keys only under finetuning_type: lora), the global batch
    resolved for this node (sherlock.node)."""
    hparams = merged(config["sft"]["common"], config["sft"][run])
    if run == "perception":  # a random model learns to see: in full (sherlock.config's check)
        hparams["finetuning_type"] = "full"
    return _resolved(finetuning_keys(hparams), f"sft.{run}")


def preference_hparams(stage):
    """A preference stage's keys (LoRA's keys only under finetuning_type: lora), the global
    batch resolved for this node (sherlock.node)."""
    keys = merged(config["preference"]["common"], config["preference"][stage])
    return _resolved(finetuning_keys(keys), f"preference.{stage}")


def training_results(hparams):
    """The run-file keys of a training: what its model depends on (sherlock.reruns), as JSON."""
    return json.dumps(split_training(hparams)[0], sort_keys=True)


def global_batch(hparams):
    """A training's examples per optimizer step: compared, so a changed batch retrains."""
    return compared_training(hparams, LAYOUT.processes)["global_batch_size"]


def training_launch(hparams, **paths):
    """How a training runs (a how() value): --launch with its execution keys (DeepSpeed read
    from the workflow folder, per-device batch and accumulation for this node, workers,
    logging), its scratch folder (<model>.partial), checkpointing and ``paths`` (run-file keys
    such as the model folder); --resume, --nodes; --force-torchrun for DeepSpeed on one GPU."""

    def launch(output):
        settings = launch_settings(hparams, **paths)
        for key in ("deepspeed", "fsdp_config"):  # read from the workflow folder when relative
            if settings.get(key):
                settings[key] = workflow_file(settings[key], workflow.basedir)
        settings.update(checkpoint_keys(config["checkpointing"]))
        settings["output_dir"] = f"{output.model}.partial"
        options = "--resume" if config["checkpointing"]["resume"] else "--no-resume"
        nodes = config["resources"]["train"].get("nodes", 1)
        if nodes > 1:
            options += f" --nodes {nodes}"
        if hparams.get("deepspeed") and nodes == 1 and config["resources"]["train"]["gpu"] == 1:
            options += " --force-torchrun"  # DeepSpeed needs torchrun's process group
        return f"{options} --launch {shlex.quote(json.dumps(settings, sort_keys=True))}"

    return how(launch)


def source_file():
    """The source data file: the synthetic set built here, or the user's file (an input when it
    is there or a download job fetches it; else a missing input of source_records)."""
    return res("synthetic", "train.jsonl") if SYNTHETIC else config["source"]["path"]


def source_input():
    path = source_file()
    return path if SYNTHETIC or os.path.isfile(path) or DOWNLOAD_SOURCE else []


def source_image_root(source):
    return os.path.dirname(source) if SYNTHETIC else config["source"]["image_root"]


def offline_source_split():
    """The annotated split the offline pairs come from (the paper re-uses D_A)."""
    return res("data", "D_A.json" if config["offline"]["source_split"] == "d_a" else "D_B.json")


def pair_fit_options(stage):
    """What a pair-building job needs to leave out the records the training of ``stage``
    ('offline' or 'online') could not fit: its cutoff_len (its refine prompt: params.refine)."""
    cutoff = preference_hparams(stage).get("cutoff_len")
    return f"--cutoff-len {cutoff}" if cutoff else ""


def refine_choice_of(place):
    """The refine prompt config prompts.refine gives ``place`` (sft_data, preference,
    candidates or evaluation): None for the clean wording, the other shipped wording's name, or
    a custom file's path."""
    choice = refine_choice(config["prompts"]["refine"], place)
    return None if not choice or choice == "clean" else choice


def refine_prompt_option(place):
    """--refine-prompt of one place (a how() value: a custom file's path says where it lies;
    refine_prompt_id is what the jobs that read it compare). Nothing for the clean wording, the
    scripts' own default."""
    choice = refine_choice_of(place)
    return how(f"--refine-prompt {shlex.quote(choice)}" if choice else "")


def refine_prompt_id(place):
    """What the refine prompt of ``place`` is, as its jobs compare it: None (clean), a shipped
    wording's name, or a custom file by identity (its size and time, not its path)."""
    choice = refine_choice_of(place)
    if choice is None or choice in REFINE_WORDINGS:
        return choice
    return identity(choice)


def annotated_split(name):
    """D_A or D_B as R0's run and Stage I's direct rows read it: the split (``name``.json), or,
    with source.multi_turn: whole, its rows with every turn of a multi-turn record (rule
    whole_turns). The default adds no job and changes no input of an earlier run."""
    if config["source"]["multi_turn"] == "whole":
        return res("data", f"{name}_whole_turns.json")
    return res("data", f"{name}.json")


def stage_one_data(run, data):
    """What Stage I's run ``run`` trains on: ``data``, or, with images.resample other than
    bicubic (a filter LLaMA-Factory cannot be told), a copy whose images the workflow scaled
    (rule fitted_stage_one_data). The default adds no job and changes no input."""
    if config["images"]["resample"] == "bicubic":
        return data
    return res("llamafactory", run, "dataset.json")


def conclusion_stop_option():
    """R0's answers for Stage I raw (generation.sherlock_sft.stop_at_conclusion false), or cut
    after their first </CONCLUSION> (the default, which adds nothing: no rerun of earlier runs)."""
    stop = config["generation"]["sherlock_sft"]["stop_at_conclusion"]
    return "" if stop else " --no-conclusion-stop"


def rejected_prefill_option():
    """offline.rejected_prefill: nothing for the default (head), so earlier runs plan no rerun."""
    prefill = config["offline"]["rejected_prefill"]
    return "" if prefill == "head" else f" --rejected-prefill {prefill}"


def image_pixel_options():
    """The one image size of every stage: sft.common's limits (LLaMA-Factory's defaults when
    null), which Stage I trains at, every generating job answers at (images.fit_pixels) and the
    preference stages train at (their run files)."""
    pixels = config["sft"]["common"]
    resample = config["images"]["resample"]
    return (
        f"--image-min-pixels {pixels.get('image_min_pixels') or LLAMAFACTORY_MIN_PIXELS}"
        f" --image-max-pixels {pixels.get('image_max_pixels') or LLAMAFACTORY_MAX_PIXELS}"
        # the filter only when not LLaMA-Factory's own (bicubic): earlier runs plan no rerun
        + ("" if resample == "bicubic" else f" --image-resample {resample}")
    )


def generation_options(sampling):
    """What a generating job's answers depend on; ``sampling`` names a generation.* section.

    One compared string: a change to any of them reruns the job. The batch size is among them:
    it decides which requests share a sampling seed (sherlock.generation.base) and a padded
    batch. How it runs (chunk size, shard count, the engine's memory share) is
    generation_run_options().
    """
    gen = config["generation"]
    options = (
        f"--backend {gen['backend']} --batch-size {gen['batch_size']}"
        f" --max-new-tokens {gen['max_new_tokens']} --dtype {gen['dtype']}"
        f" --temperature {gen[sampling]['temperature']} --top-p {gen[sampling]['top_p']}"
        f" --seed {config['seed']}"
        f" {image_pixel_options()}"
        + (" --native-images" if gen["native_images"] else "")
        + (" --trust-remote-code" if config["base_model"]["trust_remote_code"] else "")
    )
    return f"{options}{vllm_options()}"


def generation_run_options():
    """How a generating job runs (a how() value): progress saved every chunk_size requests,
    the vLLM engine's share of GPU memory. Neither changes an answer."""
    return how(f"--chunk-size {config['generation']['chunk_size']}{vllm_run_options()}")


def vllm_options():
    """The vLLM engine settings an answer depends on (generation.vllm.max_model_len) when
    generation.backend is vllm, else none; the generating jobs and the llm judges share them."""
    gen = config["generation"]
    if gen["backend"] != "vllm" or not gen["vllm"]["max_model_len"]:
        return ""
    return f" --max-model-len {gen['vllm']['max_model_len']}"


def vllm_run_options():
    """The vLLM engine's share of GPU memory (how it runs), when generation.backend is vllm."""
    gen = config["generation"]
    if gen["backend"] != "vllm":
        return ""
    return f" --gpu-memory-utilization {gen['vllm']['gpu_memory_utilization']}"


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
    """What the judge's verdicts depend on (compared); the llm judge runs on the generation
    backend (docs/method.md §7.2). Its model's path and chunk size: judge_run_options()."""
    judge = config["online"]["judge"]
    options = f"--judge {judge['kind']}"
    if judge["trust_remote_code"]:
        options += " --trust-remote-code"
    if LLM_JUDGE:
        gen = config["generation"]
        options += (
            f" --judge-batch-size {judge['batch_size']}"
            f" --judge-max-new-tokens {judge['max_new_tokens']} --dtype {judge['dtype']}"
            f" --backend {gen['backend']}{vllm_options()}"
        )
    return options


def judge_run_options():
    """Where the llm judge's model is and how often its replies are saved (a how() value)."""
    if not LLM_JUDGE:
        return how("")
    judge = config["online"]["judge"]
    return how(
        f"--judge-model {shlex.quote(judge_model_path())}"
        f" --judge-chunk-size {judge['chunk_size']}{vllm_run_options()}"
    )


def judge_model_path():
    return res("models", "judge") if TINY_JUDGE else model_path(config["online"]["judge"]["model"])


JUDGE_MODEL = model_identity(config["online"]["judge"]["model"]) if LLM_JUDGE else None
# Hub models the download jobs fetch (rules/downloads.smk), and the files (not missing then).
DOWNLOADED_MODELS = {
    value: downloaded_model(value)
    for value in (
        None if TINY_BASE else config["base_model"]["path"],
        config["online"]["judge"]["model"] if LLM_JUDGE else None,
        config["evaluation"]["judge"]["model"],
    )
    if value and downloaded_model(value)
}
DOWNLOADED_FILES = [*DOWNLOADED_MODELS, *([config["source"]["path"]] if DOWNLOAD_SOURCE else [])]


def judge_model_input():
    """The llm judge's model as a file dependency when it is built or downloaded here."""
    if TINY_JUDGE:
        return res("models", "judge")
    return model_input(config["online"]["judge"]["model"]) if LLM_JUDGE else []


# Evaluation (rules/evaluate.smk): which checkpoints, on which benchmarks.
EVALUATION = config["evaluation"]
CHECKPOINTS = EVALUATION["checkpoints"] or [
    "base", "r0", "sft", "offline", *(f"iter{k}" for k in ITERATIONS)
]
# Outside models (evaluation.models: name -> folder or hub id): rows of the same table.
OUTSIDE_MODELS = dict(EVALUATION["models"])
CHECKPOINTS = [*CHECKPOINTS, *OUTSIDE_MODELS]
TRAINED = ["r0", "sft", "offline", *(f"iter{k}" for k in ITERATIONS)]
# Runs sharing their stages (stages_dir; an ablation's variants and seeds, docs/ablations.md):
# each stage writes under <stages_dir>/<stage>-<fingerprint>, an evaluation under the folder of
# the checkpoint it scores, so its rules' outputs start with {stage_folder} (this run's folders).
if config.get("stages_dir"):
    STAGES = StageRouter(config, CHECKPOINTS)

    wildcard_constraints:
        stage_folder=STAGES.wildcard_constraint(),
# A seed study (an ablation's study of a variant, docs/ablations.md) shown in the report beside
# this run's page.
SEED_STUDY = (
    workflow_file(EVALUATION["seed_study"], workflow.basedir) if EVALUATION["seed_study"] else None
)
HELDOUT = {"path": res("eval", "benchmarks", "heldout.jsonl"), "image_root": None,
           "format": "jsonl", "metric": "accuracy"}
BENCHMARKS = {
    **({"heldout": HELDOUT} if SYNTHETIC else {}),
    **resolved_benchmarks(EVALUATION),
}
# A judged benchmark without a judge model is a config error (the plan cannot be made).
if problems := judge_problems(BENCHMARKS, EVALUATION["judge"]):
    raise WorkflowError("evaluation benchmarks:\n  " + "\n  ".join(problems))
VLMEVALKIT_BENCHMARKS = [n for n, spec in BENCHMARKS.items() if spec["format"] == "vlmevalkit"]
JUDGED_BENCHMARKS = [n for n, spec in BENCHMARKS.items() if spec["metric"] == "judge"]


def benchmark_pattern(names):
    """A wildcard constraint matching exactly these benchmark names (none: matches nothing)."""
    return "|".join(re.escape(name) for name in names) or r"(?!)"


def benchmark_file_input(name):
    """A user's benchmark file as an input when it is there (else a missing input of the jobs
    that read it: the plan still works, sherlock.plan_check)."""
    path = BENCHMARKS[name]["path"]
    return path if os.path.isfile(path) or name == "heldout" and SYNTHETIC else []


def benchmark_path(name):
    """The benchmark JSONL an evaluate job reads: a VLMEvalKit TSV's conversion, or the file."""
    if BENCHMARKS[name]["format"] == "vlmevalkit":
        return res("eval", "benchmarks", f"{name}.jsonl")
    return BENCHMARKS[name]["path"]


def benchmark_items(wildcards):
    """The benchmark JSONL an evaluate job reads: the file itself, or a VLMEvalKit TSV's
    conversion (rule vlmevalkit_benchmark)."""
    if BENCHMARKS[wildcards.benchmark]["format"] == "vlmevalkit":
        return res("eval", "benchmarks", f"{wildcards.benchmark}.jsonl")
    return benchmark_file_input(wildcards.benchmark)


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
    """What the open-answer judge's verdicts depend on (evaluation.judge; compared), run on the
    generation backend. Its model's path: evaluation_judge_run_options()."""
    judge = EVALUATION["judge"]
    options = (
        f"--judge-batch-size {judge['batch_size']}"
        f" --judge-max-new-tokens {judge['max_new_tokens']} --dtype {judge['dtype']}"
        f" --backend {config['generation']['backend']}{vllm_options()} --seed {config['seed']}"
    )
    return options + (" --trust-remote-code" if judge["trust_remote_code"] else "")


def evaluation_judge_run_options():
    """Where the open-answer judge's model is, and the vLLM engine's memory share (how())."""
    model = model_path(EVALUATION["judge"]["model"])
    return how(f"--judge-model {shlex.quote(str(model))}{vllm_run_options()}")


EVALUATION_JUDGE_MODEL = model_identity(EVALUATION["judge"]["model"])


def checkpoint_path(name):
    """The folder (or hub id) of a checkpoint named as in evaluation.checkpoints or models."""
    if name in OUTSIDE_MODELS:
        return model_path(OUTSIDE_MODELS[name])
    return base_model_path() if name == "base" else res("models", name)


def checkpoint_identity(wildcards):
    """What an evaluated checkpoint is (compared): the base or an outside model's identity, or
    the name of a checkpoint built here (its folder is an input)."""
    name = wildcards.checkpoint
    if name in OUTSIDE_MODELS:
        return model_identity(OUTSIDE_MODELS[name])
    return BASE_MODEL if name == "base" else name


def checkpoint_input(wildcards):
    """A checkpoint as a file dependency: a model built here; the base or an outside model only
    when built or downloaded here (a local folder is compared by identity instead)."""
    name = wildcards.checkpoint
    if name in OUTSIDE_MODELS:
        return model_input(OUTSIDE_MODELS[name])
    return base_model_input() if name == "base" else res("models", name)


def answer_from(name):
    """Where a checkpoint's answers are read from: evaluation.answer_from for a trained one;
    auto (the CONCLUSION, else the whole response) for the base and outside models."""
    return "auto" if name == "base" or name in OUTSIDE_MODELS else EVALUATION["answer_from"]


def image_root_option(wildcards):
    """--image-root of a benchmark whose image paths are not relative to its own folder (a
    VLMEvalKit file's image_path cells; its converted JSONL points at its pictures itself)."""
    spec = BENCHMARKS[wildcards.benchmark]
    root = spec.get("image_root")
    return f"--image-root {shlex.quote(root)}" if root and spec["format"] == "jsonl" else ""


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
    """The shard folders a generating job gathers (none when unsharded). Their list changes
    with the shard count; the workflow profile keeps Snakemake from comparing lists of input
    paths (rerun-triggers without `input`), so a new shard count reruns nothing."""
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
    and the shard folders to gather when sharded (a derived param: never compared)."""

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


# LoRA (docs/trainer.md, "LoRA"). A training stage (r0, sft, offline, iter<k>) whose
# finetuning_type is lora writes its adapter, models/<stage>_adapter/; the merge job
# (rules/lora.smk) writes models/<stage>/, the plain merged model every later step reads, as a
# full stage's training writes it. Training rules name their output with trained_output.
def stage_hparams(stage):
    """The merged hyper-parameters of a training stage (r0, sft, offline, iter<k>)."""
    if stage in ("r0", "sft"):
        return sft_hparams("r0" if stage == "r0" else "sherlock_sft")
    return preference_hparams("offline" if stage == "offline" else "online")


def lora_stage(stage):
    return is_lora(stage_hparams(stage))


def trained_output(stage):
    """What the training of ``stage`` writes: its adapter folder (LoRA) or the model itself;
    ``stage`` may be the pattern iter{k} (every online iteration trains alike)."""
    name = f"{stage}_adapter" if lora_stage(stage) else stage
    return directory(res("models", name))


def training_folder(stage):
    """The folder a finished training of ``stage`` left: its logs (trainer_state.json,
    sherlock_training.json) are there, adapter or model."""
    return res("models", f"{stage}_adapter" if lora_stage(stage) else stage)


def start_of(stage):
    """The model ``stage`` starts from: base for R0 and Sherlock-SFT, else the stage before."""
    if stage in ("r0", "sft"):
        return "base"
    if stage == "offline":
        return "sft"
    k = int(stage.removeprefix("iter"))
    return "offline" if k == 1 else f"iter{k - 1}"


def merge_chain(stage):
    """(root, adapters): the first model up the chain of starting models that no LoRA stage
    trained (the base, or a full stage's model), and the adapters trained from it up to
    ``stage``, in order. A merge reads only these, never another merged model, so a merged model
    deleted under intermediates.keep_merged_models: false is merged again without retraining
    the stages after it."""
    adapters = []
    while stage != "base" and lora_stage(stage):
        adapters.insert(0, res("models", f"{stage}_adapter"))
        stage = start_of(stage)
    return stage, adapters


def merge_root(stage):
    """The model a merge starts from (sherlock.sft.merge): a path, and the file dependency."""
    root, _ = merge_chain(stage)
    if root == "base":
        return base_model_path(), base_model_input()
    return res("models", root), res("models", root)


def merge_root_identity(stage):
    """What a merge starts from, as its job compares it: the base model's identity, or the
    name of the full stage's model built here."""
    root, _ = merge_chain(stage)
    return BASE_MODEL if root == "base" else root


def merged_output(pattern):
    """A merged model's folder: temporary under intermediates.keep_merged_models: false."""
    folder = directory(pattern)
    return folder if config["intermediates"]["keep_merged_models"] else temp(folder)


LORA_STAGES = [
    stage for stage in ("r0", "sft", "offline", *(f"iter{k}" for k in ITERATIONS)) if lora_stage(stage)
]


# ── Before any job ────────────────────────────────────────────────────────────────────────────
# What a planned job needs and is not here (data, models, benchmark files, interpreters) is
# listed at the top of the plan; a real run stops before its first job when a job it would run
# needs any of it (sherlock.plan_check). The node's layout is summed up beside it.
MISSING = missing_inputs(config, workflow.basedir, CONDA, downloads=DOWNLOADED_FILES)
if workflow.is_main_process:
    batches = {}
    for name, keys, recipe in (
        ("Stage I (sft.common)", sft_hparams("r0"), config["sft"]["common"].get("global_batch_size")),
        ("preference (preference.common)", preference_hparams("offline"),
         config["preference"]["common"].get("global_batch_size")),
    ):  # fmt: skip
        batches[name] = (keys, recipe)
    if LAYOUT.gpus or any(recipe is not None for _, recipe in batches.values()):
        show_once(describe(LAYOUT, batches))
    if MISSING:
        show_once(plan_warning(MISSING))
    # A local run schedules at most node.gpus GPUs' worth of jobs at once, unless --resources
    # gpu=N says otherwise; a cluster run (SLURM) is never capped here.
    if workflow.local_exec and LAYOUT.gpus and "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", LAYOUT.gpus)


def stop_if_missing():
    """Called before the first job of a run (the Snakefile's onstart): stop, naming all of them,
    when a job about to run needs something missing."""
    jobs = [(job.rule.name, dict(job.wildcards_dict)) for job in workflow.dag.needrun_jobs()]
    if message := stop_message(MISSING, jobs):
        raise WorkflowError(message)
