"""Configuration checks that run before any job: schema first, then cross-field rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator


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
    if config["base_model"]["path"] == "tiny" and config["base_model"]["template"] != "qwen2_vl":
        problems.append("base_model.template: the tiny model is a Qwen2-VL; use qwen2_vl")
    judge = config["online"]["judge"]
    if judge["kind"] == "llm" and not judge.get("model"):
        problems.append("online.judge.model: required when online.judge.kind is llm")
    generation = config["generation"]
    if generation["chunk_size"] % generation["batch_size"]:
        problems.append(
            f"generation.chunk_size: {generation['chunk_size']} is not a multiple of "
            f"generation.batch_size ({generation['batch_size']}); chunks must be whole batches"
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
    if tiny["hidden_size"] % tiny["num_heads"]:
        problems.append("tiny_model.hidden_size: must be a multiple of tiny_model.num_heads")
    return problems


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Raise ConfigError listing every problem, or return when the config is usable."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    problems = schema_problems(config, schema)
    if not problems:
        problems = cross_field_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def merged(common: dict, specific: dict) -> dict:
    """A run's hyper-parameters: ``common`` overridden by the run's own keys."""
    return {**common, **specific}


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
