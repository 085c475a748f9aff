"""The embedded default's values (config/config.yaml), for tests that need a complete section:
the library has no defaults of its own, so each value is written once, in the config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sherlock.perturbation.recipes import PerturbationConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG: dict[str, Any] = yaml.safe_load(
    (ROOT / "config" / "config.yaml").read_text(encoding="utf-8")
)
PREFERENCE = DEFAULT_CONFIG["preference"]["common"]
FREEZE_KEYS = ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model")


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, mapping by mapping (as presets are)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def perturbation_section(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return merged(DEFAULT_CONFIG["perturbation"], overrides or {})


def perturbation(overrides: dict[str, Any] | None = None) -> PerturbationConfig:
    """The default perturbation config with ``overrides`` laid over it."""
    return PerturbationConfig.from_dict(perturbation_section(overrides))


def coefficients_of(config: PerturbationConfig, beta: float | None = None,
                    beta_refine: float | None = None):
    """The loss coefficients of ``config`` with the default (or given) β and β_r."""
    return config.coefficients(
        PREFERENCE["pref_beta"] if beta is None else beta,
        PREFERENCE["pref_beta_refine"] if beta_refine is None else beta_refine,
    )


def objective_keys() -> dict[str, Any]:
    """What every run file of the preference rules carries besides paths and schedule: the
    objective's keys as the config names them, what it freezes, and the perturbation section."""
    keys = ("pref_beta", "pref_beta_refine", "dpo_coef", "sc_coef", "pref_ftx", "bf16")
    keys += ("nonfinite_steps",)
    keys += FREEZE_KEYS
    return {
        **{key: PREFERENCE[key] for key in keys},
        "perturbation": perturbation_section(),
    }


def training_args(output_dir: str | Path, **overrides: Any):
    """The Sherlock trainer's arguments the tests share: the default objective (β 0.1, β_r 0.025,
    0.2 · DPO + 0.8 · SC), reference precomputed, on the CPU, nothing saved, no tracker, nothing
    frozen; ``overrides`` win."""
    from sherlock.preference.arguments import SherlockConfig

    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "beta": 0.1,
        "beta_refine": 0.025,
        "dpo_coef": 0.2,
        "sc_coef": 0.8,
        "precompute_ref_log_probs": True,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "nonfinite_steps": "stop",
        **{key: False for key in FREEZE_KEYS},
    }
    return SherlockConfig(**{**settings, **overrides})
