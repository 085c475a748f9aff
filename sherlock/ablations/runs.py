"""The runs of an ablation: every variant of ``ablations.variants`` for every seed of
``ablations.seeds``, each a complete config of its own (docs/ablations.md).

A variant is a partial config laid over the run's, mapping by mapping as a preset is laid over
the default. Each run writes its own summaries under ``<results_dir>/runs/<variant>/seed<S>``
and its stages under the shared ``stages_dir`` (``<results_dir>/stages`` unless set), where
``sherlock.ablations.stages`` names each stage's folder by what it depends on.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Any

# Keys a variant may not set: the seed comes from ablations.seeds, the folders from the ablation.
RESERVED = ("seed", "results_dir", "stages_dir", "ablations")
VARIANT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class AblationError(ValueError):
    """An ablation section that cannot be built; the message names the key."""


@dataclass(frozen=True)
class AblationRun:
    """One variant at one seed, with its complete config."""

    variant: str
    seed: int
    config: dict[str, Any]

    @property
    def name(self) -> str:
        """The module name of the run (its rules are named <name>_<rule>)."""
        return f"{self.variant}_seed{self.seed}"


def is_ablation(config: dict[str, Any]) -> bool:
    """Whether ``config`` asks for an ablation (ablations.seeds not empty)."""
    return bool((config.get("ablations") or {}).get("seeds"))


def overlay(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, mapping by mapping (as a preset is)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def baseline_of(section: dict[str, Any]) -> str:
    """The variant the others are compared with: ``baseline``, or the first variant."""
    variants = section.get("variants") or {}
    baseline = section.get("baseline") or next(iter(variants), None)
    if baseline not in variants:
        raise AblationError(
            f"ablations.baseline: {baseline!r} is not a variant (variants: {', '.join(variants)})"
        )
    return baseline


def ablation_runs(config: dict[str, Any]) -> list[AblationRun]:
    """Every (variant, seed) of ``config["ablations"]``, variant by variant, with its config:
    the variant's overrides laid over ``config``, the seed set, the run's folders set, and no
    ablation of its own (nor a seed study page: the ablation makes its own)."""
    section = config["ablations"]
    seeds = list(section["seeds"])
    variants = section.get("variants") or {}
    if not variants:
        raise AblationError("ablations.variants: name at least one variant (an empty {} is one)")
    if len(set(seeds)) != len(seeds):
        raise AblationError(f"ablations.seeds: a seed is listed twice ({seeds})")
    baseline_of(section)
    root = config["results_dir"]
    stages_dir = config.get("stages_dir") or os.path.join(root, "stages")
    runs = []
    for variant, overrides in variants.items():
        if not VARIANT_NAME.fullmatch(variant):
            raise AblationError(
                f"ablations.variants.{variant}: a name is a letter then letters, digits or _"
            )
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise AblationError(f"ablations.variants.{variant}: a mapping of config keys")
        for key in RESERVED:
            if key in overrides:
                raise AblationError(
                    f"ablations.variants.{variant}.{key}: set by the ablation, not by a variant"
                )
        for seed in seeds:
            run = overlay(config, overrides)
            run["seed"] = seed
            run["results_dir"] = os.path.join(root, "runs", variant, f"seed{seed}")
            run["stages_dir"] = stages_dir
            run["ablations"] = {**copy.deepcopy(section), "seeds": [], "variants": {}}
            run["evaluation"]["seed_study"] = None
            runs.append(AblationRun(variant, seed, run))
    return runs
