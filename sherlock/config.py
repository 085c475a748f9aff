"""Configuration checks that run before any job: schema first, then cross-field rules."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from sherlock.embedded.architectures import TEMPLATES as TINY_TEMPLATES


class ConfigError(ValueError):
    """A configuration that must not reach a job; the message names the key."""


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def schema_problems(config: dict, schema: dict) -> list[str]:
    """One line per schema violation, each naming the offending key."""
    problems = []
    for error in Draft202012Validator(schema).iter_errors(config):
        where = _key(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - set(allowed))
            for name in unknown:
                key = f"{where}.{name}" if error.absolute_path else name
                problems.append(f"{key}: unknown key (allowed here: {', '.join(allowed)})")
        else:
            problems.append(f"{where}: {error.message}")
    return sorted(problems)


def cross_field_problems(config: dict) -> list[str]:
    problems = []
    source = config["source"]
    if source["format"] != "synthetic":
        for key in ("path", "image_root"):
            if not source.get(key):
                problems.append(f"source.{key}: required when source.format is {source['format']}")
    judge = config["online"]["judge"]
    if judge["kind"] == "llm" and not judge.get("model"):
        problems.append("online.judge.model: required when online.judge.kind is llm")
    if judge["chunk_size"] % judge["batch_size"]:
        problems.append(
            f"online.judge.chunk_size: {judge['chunk_size']} is not a multiple of "
            f"online.judge.batch_size ({judge['batch_size']}); chunks must be whole batches"
        )
    generation = config["generation"]
    if generation["chunk_size"] % generation["batch_size"]:
        problems.append(
            f"generation.chunk_size: {generation['chunk_size']} is not a multiple of "
            f"generation.batch_size ({generation['batch_size']}); chunks must be whole batches"
        )
    if config["resources"]["generate"].get("nodes", 1) > 1:
        problems.append(
            "resources.generate.nodes: a generating job runs on one node; spread generation "
            "with generation.shards instead"
        )
    if config["resources"]["gather"].get("nodes", 1) > 1:
        problems.append("resources.gather.nodes: a gathering job runs on one node")
    for run in ("r0", "sherlock_sft"):
        for key in ("image_min_pixels", "image_max_pixels"):
            if config["sft"][run].get(key) is not None:
                problems.append(
                    f"sft.{run}.{key}: set it in sft.common only, the one image size of every "
                    "stage (generation and preference training use it too)"
                )
    if config["sft"]["perception"].get("finetuning_type") == "lora":
        problems.append(
            "sft.perception.finetuning_type: the perception stage trains a random model in full "
            "(sft.common's finetuning_type does not reach it either)"
        )
    if config["online"]["min_pairs"] > config["online"]["target_pairs"]:
        problems.append("online.min_pairs: larger than online.target_pairs")
    evaluation = config["evaluation"]
    known = {"base", "r0", "sft", "offline"} | {
        f"iter{k}" for k in range(1, config["online"]["iterations"] + 1)
    }
    for name in evaluation["checkpoints"] or []:
        if name not in known:
            problems.append(
                f"evaluation.checkpoints: {name!r} is not a checkpoint of this run "
                f"(known: {', '.join(sorted(known))})"
            )
    if source["format"] == "synthetic" and "heldout" in evaluation["benchmarks"]:
        problems.append("evaluation.benchmarks.heldout: the name is taken by the synthetic split")
    tiny = config["tiny_model"]
    expected = TINY_TEMPLATES[tiny["architecture"]]
    if config["base_model"]["path"] == "tiny" and config["base_model"]["template"] != expected:
        problems.append(
            f"base_model.template: the tiny {tiny['architecture']} trains with template "
            f"{expected!r}, not {config['base_model']['template']!r}"
        )
    if tiny["hidden_size"] % tiny["num_heads"]:
        problems.append("tiny_model.hidden_size: must be a multiple of tiny_model.num_heads")
    problems += sharding_problems(config)
    return problems


def sharding_problems(config: dict) -> list[str]:
    """One sharded backend per training (DeepSpeed or FSDP), as each stage's sections merge."""
    problems = []
    for stage, runs in (("sft", ("r0", "sherlock_sft")), ("preference", ("offline", "online"))):
        for run in runs:
            settings = merged(config[stage]["common"], config[stage][run] or {})
            if settings.get("deepspeed") and settings.get("fsdp"):
                problems.append(f"{stage}.{run}: deepspeed and fsdp both set; choose one backend")
            if settings.get("fsdp_config") and not settings.get("fsdp"):
                problems.append(f"{stage}.{run}.fsdp_config: set without fsdp")
            if stage == "sft" and settings.get("deepspeed") and (
                settings.get("nonfinite_steps") == "skip"
            ):
                problems.append(
                    f"sft.{run}.nonfinite_steps: skip is not possible under DeepSpeed in "
                    "LLaMA-Factory, whose trainer steps inside backward; use stop"
                )
    return problems


@functools.lru_cache(maxsize=4)
def _schema(path: str) -> dict:
    """The schema, read once per process: an ablation checks one config per run."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when installed
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Raise ConfigError listing every problem, or return when the config is usable."""
    schema = _schema(str(schema_path))
    problems = schema_problems(config, schema)
    if not problems:
        problems = cross_field_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def merged(common: dict, specific: dict) -> dict:
    """A run's hyper-parameters: ``common`` overridden by the run's own keys."""
    return {**common, **specific}


# LLaMA-Factory's LoRA keys, in sft.* and preference.* alike (docs/trainer.md, "LoRA").
LORA_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target")


def is_lora(hparams: dict) -> bool:
    """Whether a run's (merged) hyper-parameters train a LoRA adapter."""
    return hparams.get("finetuning_type") == "lora"


def finetuning_keys(hparams: dict) -> dict:
    """A run's hyper-parameters as its run file gets them: ``finetuning_type`` and the LoRA keys
    only for a LoRA run. They decide nothing in a full run, so its run file (and the rule params
    Snakemake compares) stay what they were before LoRA existed."""
    if is_lora(hparams):
        return hparams
    return {k: v for k, v in hparams.items() if k not in ("finetuning_type", *LORA_KEYS)}


def put_interpreter_on_path() -> None:
    """Make `python` in job commands the interpreter running Snakemake.

    Rules call plain `python` so that commands hold no machine-specific path; under a conda
    deployment each env brings its own, and otherwise (a venv, activated or not) this one must win.
    """
    import os
    import sys

    folder = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != folder:
        os.environ["PATH"] = folder + os.pathsep + path


# Software stacks (envs/): LLaMA-Factory, our trainer and the transformers backends in one;
# vLLM, which pins other torch/transformers versions, in its own.
ENVIRONMENT_FILES = {"train": "envs/train.yaml", "vllm": "envs/vllm.yaml"}
VLLM_SETUP = "python3 -m venv .venv-vllm && .venv-vllm/bin/pip install -e '.[vllm]'"


def generation_stack(config: dict) -> str:
    """The stack generating jobs run in: vLLM's for the vllm backend, else the training stack."""
    return "vllm" if config["generation"]["backend"] == "vllm" else "train"


def interpreter(config: dict, role: str, conda: bool) -> str:
    """How job commands start Python for ``role`` (``python.train`` / ``python.generate``).

    ``python`` under a conda deployment (each rule's env brings its own) or when no interpreter
    is named (the one running Snakemake, see ``put_interpreter_on_path``); else the named one.
    """
    import os
    import shlex

    path = config["python"][role]
    if conda or not path:
        return "python"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        hint = f" (make it with: {VLLM_SETUP})" if role == "generate" else ""
        raise ConfigError(f"python.{role}: {path} is not an executable file{hint}")
    return shlex.quote(path)


def stack_problem(config: dict, conda: bool) -> str | None:
    """Why the generating jobs could not start their backend here, or None."""
    import importlib.util

    if generation_stack(config) != "vllm" or conda or config["python"]["generate"]:
        return None
    if importlib.util.find_spec("vllm") is not None:
        return None
    return (
        "generation.backend: vllm needs the vLLM environment, which the Python running "
        "Snakemake lacks: run with --sdm conda (envs/vllm.yaml), or name its interpreter in "
        f"python.generate (make one with: {VLLM_SETUP})"
    )


def put_package_on_pythonpath(root: str) -> None:
    """Let every job import ``sherlock`` from this checkout, whatever environment runs it (the
    conda envs and a named ``python.*`` hold only third-party packages)."""
    import os

    path = os.environ.get("PYTHONPATH", "")
    if path.split(os.pathsep)[0] != root:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
