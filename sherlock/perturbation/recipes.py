"""Perturbed continuations (docs/method.md §4): truncation points and image noise of both recipes.

Two recipes, selected in config: ``reference`` (what the seed's scripts do, defects fixed) and
``paper`` (as published). Everything here is pure and seeded per record, so a rerun rebuilds
exactly the same prefixes and images. The record weight w(i, ε) and the loss coefficients
derived from it are computed in ``sherlock.preference.coefficients``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

from sherlock.data.response import stage_start
from sherlock.preference.coefficients import RECIPES, Coefficients, WeightFormula

# The truncation points each recipe knows how to cut (see ``truncate``).
_VALID_POINTS = {"reference": (0, 1, 2), "paper": (1, 2, 3, 4)}


@dataclass(frozen=True)
class ReferenceRecipe:
    """The seed scripts' draws: i over ``truncation_points``, Gaussian noise ε ~ U(low, high),
    and uniform random pixels (ε = 1) at the deepest point when ``random_pixels_at_deepest``."""

    truncation_points: tuple[int, ...]
    noise_low: float
    noise_high: float
    random_pixels_at_deepest: bool


@dataclass(frozen=True)
class PaperRecipe:
    """The published draws: i over ``truncation_points``, ε ~ U(low, high); ``beta_sc_scale``
    gives the correction terms' β_SC(i, ε) = beta_sc_scale·w (see
    ``sherlock.preference.coefficients``)."""

    truncation_points: tuple[int, ...]
    noise_low: float
    noise_high: float
    beta_sc_scale: float


def _section(cls: type, name: str, values: Any) -> Any:
    """Build one recipe dataclass from its config section: every key required, none unknown."""
    if not isinstance(values, Mapping):
        raise ValueError(f"perturbation.{name}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(
            f"perturbation.{name}: unknown key {unknown[0]!r}; expected some of {sorted(names)}"
        )
    missing = [key for key in names if values.get(key) is None]
    if missing:
        raise ValueError(f"perturbation.{name}: missing {', '.join(missing)}")
    kwargs = dict(values)
    kwargs["truncation_points"] = tuple(int(p) for p in kwargs["truncation_points"])
    for key in ("noise_low", "noise_high", "beta_sc_scale"):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])
    return cls(**kwargs)


def _check_recipe(name: str, recipe: ReferenceRecipe | PaperRecipe) -> None:
    points = recipe.truncation_points
    if not points:
        raise ValueError(f"perturbation.{name}.truncation_points: must not be empty")
    bad = [p for p in points if p not in _VALID_POINTS[name]]
    if bad:
        raise ValueError(
            f"perturbation.{name}.truncation_points: {bad} not among the "
            f"{name} recipe's points {_VALID_POINTS[name]}"
        )
    if not 0.0 <= recipe.noise_low <= recipe.noise_high:
        raise ValueError(
            f"perturbation.{name}.noise_low/noise_high: need "
            f"0 <= noise_low <= noise_high, got {recipe.noise_low}, "
            f"{recipe.noise_high}"
        )


@dataclass(frozen=True)
class PerturbationConfig:
    """The ``perturbation`` config section: the selected recipe and the constants of both."""

    recipe: str
    reference: ReferenceRecipe
    paper: PaperRecipe
    weight: WeightFormula

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerturbationConfig:
        """Parse the config section (the embedded default's values are in config/config.yaml;
        every key is required here, so no default is written twice); unknown keys raise."""
        d = dict(d or {})
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise ValueError(
                    f"perturbation: unknown key {key!r}; expected some of {sorted(known)}"
                )
        missing = [key for key in known if key not in d]
        if missing:
            raise ValueError(f"perturbation: missing {', '.join(missing)}")
        recipe = d["recipe"]
        if recipe not in RECIPES:
            raise ValueError(f"perturbation.recipe: expected one of {RECIPES}, got {recipe!r}")
        config = cls(
            recipe=recipe,
            reference=_section(ReferenceRecipe, "reference", d["reference"]),
            paper=_section(PaperRecipe, "paper", d["paper"]),
            weight=WeightFormula.from_dict(d["weight"]),
        )
        _check_recipe("reference", config.reference)
        _check_recipe("paper", config.paper)
        return config

    def coefficients(self, beta: float, beta_refine: float) -> Coefficients:
        """The loss coefficients of this recipe for the training arguments' β and β_r."""
        return Coefficients(
            self.recipe, float(beta), float(beta_refine), self.paper.beta_sc_scale, self.weight
        )


@dataclass(frozen=True)
class Perturbation:
    """One record's draw: truncation point i, noise level ε, and whether pixels are replaced."""

    truncation: int
    noise_level: float
    random_pixels: bool


def record_rng(seed: int, record_id: str, purpose: str) -> np.random.Generator:
    """A generator private to (seed, record, purpose).

    Hashed with SHA-256 of an unambiguous JSON encoding (Python's ``hash`` is salted per
    process), so a rerun rebuilds the same draws and records/purposes get independent streams.
    """
    key = json.dumps([int(seed), str(record_id), str(purpose)]).encode("utf-8")
    digest = hashlib.sha256(key).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def draw(config: PerturbationConfig, rng: np.random.Generator) -> Perturbation:
    """Draw i uniformly over the recipe's points and ε ~ U(noise_low, noise_high)."""
    recipe = config.reference if config.recipe == "reference" else config.paper
    points = recipe.truncation_points
    truncation = int(points[int(rng.integers(len(points)))])
    # ε is always drawn, even when overridden below, so the stream position after ``draw``
    # (used next by ``perturb_image``) does not depend on i.
    noise_level = float(rng.uniform(recipe.noise_low, recipe.noise_high))
    if (
        isinstance(recipe, ReferenceRecipe)
        and recipe.random_pixels_at_deepest
        and truncation == max(points)
    ):
        # reference: at the deepest point the image is replaced by random pixels, ε = 1.
        return Perturbation(truncation, 1.0, True)
    return Perturbation(truncation, noise_level, False)


def _half_reasoning_end(response: str) -> int:
    """End offset of the paper's i = 4 head: ``<REASONING>`` + the first half of its text.

    Half = len(text) // 2 characters; the cut moves back to the last whitespace at or before
    that offset (so no word is split) and trailing whitespace is dropped, i.e. the head ends
    right after the last whole word that lies within the first half. With no such word the
    head ends right after ``<REASONING>``.
    """
    opening = stage_start(response, "REASONING") + len("<REASONING>")
    closing = response.find("</REASONING>", opening)
    if closing < 0:
        raise ValueError("response has no </REASONING> after <REASONING>")
    text = response[opening:closing]
    if not text:
        return opening
    half = len(text) // 2
    cut = half
    while cut > 0 and not text[cut].isspace():
        cut -= 1
    if not text[cut].isspace():  # no whitespace at or before the half: keep no reasoning text
        return opening
    return opening + len(text[:cut].rstrip())


def truncate(response: str, truncation: int, recipe: str) -> str:
    """The head of ``response`` kept before the continuation, for truncation point i.

    reference: 0 → ""; 1 → up to ``<CAPTION>`` (SUMMARY kept); 2 → up to ``<REASONING>``.
    paper: 1 → ""; 2 → up to ``<CAPTION>``; 3 → up to ``<REASONING>``; 4 → also the first
    half of the reasoning text (see ``_half_reasoning_end``). The result is always a string
    prefix of ``response``; a missing tag raises ValueError naming it.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")
    if truncation not in _VALID_POINTS[recipe]:
        raise ValueError(
            f"truncation point {truncation} is not one of the {recipe} recipe's "
            f"{_VALID_POINTS[recipe]}"
        )
    # The paper's points are the reference's shifted by one, plus i = 4.
    depth = truncation if recipe == "reference" else truncation - 1
    if depth == 0:
        return ""
    if depth == 1:
        return response[: stage_start(response, "CAPTION")]
    if depth == 2:
        return response[: stage_start(response, "REASONING")]
    return response[: _half_reasoning_end(response)]


def perturb_image(
    image: Image.Image, perturbation: Perturbation, rng: np.random.Generator
) -> Image.Image:
    """The perturbed RGB image: random pixels, or Gaussian noise N(0, (ε·255)²) per channel value.

    Noise is added in float64 and clipped to [0, 255] before rounding to uint8: casting the
    noise to uint8 first wraps negative values round (docs/method.md §8.3).
    """
    rgb = image.convert("RGB")
    if perturbation.random_pixels:
        size = (rgb.height, rgb.width, 3)
        return Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8))
    if perturbation.noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {perturbation.noise_level}")
    if perturbation.noise_level == 0:
        return rgb.copy()
    pixels = np.asarray(rgb, dtype=np.float64)
    noisy = pixels + rng.normal(0.0, perturbation.noise_level * 255.0, size=pixels.shape)
    return Image.fromarray(np.rint(np.clip(noisy, 0.0, 255.0)).astype(np.uint8))
