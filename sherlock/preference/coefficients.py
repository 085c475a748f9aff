"""The coefficients that multiply Δ in the Sherlock loss, computed in this one place.

Per record, from its drawn truncation point i and noise level ε (or, for a record of another
tool, from its stored ``weights`` w):

- the record weight ``w(i, ε) = 1 / (offset + (i/depth_scale)^(exponent_base +
  exponent_noise_slope·ε))``, whose constants are the config's ``perturbation.weight``;
- ``reference`` recipe: β_dpo = w·β and β_sc = w·β_r;
- ``paper`` recipe: β_dpo = β and β_sc = β_SC(i, ε) = beta_sc_scale·w.

β and β_r are the training arguments ``beta`` and ``beta_refine`` (config ``pref_beta`` and
``pref_beta_refine``); the recipe, ``beta_sc_scale`` and the weight constants are the config's
``perturbation`` section. No value here has a default: the config writes each one once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

RECIPES: tuple[str, ...] = ("reference", "paper")


@dataclass(frozen=True)
class WeightFormula:
    """w(i, ε) = 1 / (offset + (i/depth_scale)^(exponent_base + exponent_noise_slope·ε))."""

    offset: float
    depth_scale: float
    exponent_base: float
    exponent_noise_slope: float

    def __call__(self, truncation: int, noise_level: float) -> float:
        exponent = self.exponent_base + self.exponent_noise_slope * noise_level
        # i = 0 gives 0^x = 0 (x > 0), so w = 1/offset: the largest weight, no prefix shared.
        return 1.0 / (self.offset + (truncation / self.depth_scale) ** exponent)

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], where: str = "perturbation.weight"
    ) -> WeightFormula:
        """The formula from its config section; every key is required, unknown keys raise."""
        formula = cls(**_floats(cls, values, where))
        # A non-positive exponent would make 0^x blow up at i = 0 (or invert the weight's trend).
        if formula.exponent_base <= 0 or formula.exponent_base + formula.exponent_noise_slope <= 0:
            raise ValueError(
                f"{where}.exponent_base: the exponent exponent_base + exponent_noise_slope·ε "
                "must stay > 0 on [0, 1]"
            )
        if formula.depth_scale <= 0:
            raise ValueError(f"{where}.depth_scale: must be > 0")
        return formula


def _floats(cls: type, values: Mapping[str, Any], where: str) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected some of {names}")
    missing = [name for name in names if values.get(name) is None]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    return {name: float(values[name]) for name in names}


@dataclass(frozen=True)
class Coefficients:
    """Everything the per-record coefficients depend on besides the record itself."""

    recipe: str
    beta: float
    beta_refine: float
    beta_sc_scale: float
    weight: WeightFormula

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe: expected one of {RECIPES}, got {self.recipe!r}")

    def for_draw(self, truncation: int, noise_level: float) -> tuple[float, float, float]:
        """(w, β_dpo, β_sc) of a record whose i and ε are known."""
        w = self.weight(truncation, noise_level)
        if self.recipe == "reference":
            return w, w * self.beta, w * self.beta_refine
        return w, self.beta, self.beta_sc_scale * w

    def for_weight(self, weight: float) -> tuple[float, float]:
        """(β_dpo, β_sc) of a record that has only a stored weight w (reference recipe only:
        the paper's β_SC needs i and ε)."""
        if self.recipe == "paper":
            raise ValueError("the paper recipe needs each record's truncation and noise_level")
        return weight * self.beta, weight * self.beta_refine

    @classmethod
    def from_perturbation(
        cls, section: Mapping[str, Any], beta: float, beta_refine: float
    ) -> Coefficients:
        """From the config's ``perturbation`` section (recipe, ``paper.beta_sc_scale``, ``weight``)
        and the training arguments' β and β_r."""
        try:
            scale = section["paper"]["beta_sc_scale"]
            recipe, weight = section["recipe"], section["weight"]
        except (KeyError, TypeError) as error:
            raise ValueError(f"perturbation: missing {error}") from None
        formula = WeightFormula.from_dict(weight)
        return cls(recipe, float(beta), float(beta_refine), float(scale), formula)

