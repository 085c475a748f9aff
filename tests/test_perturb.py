"""Perturbed continuations (docs/method.md §4): config, draws, truncation, image noise, weights."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from defaults import DEFAULT_CONFIG, coefficients_of, perturbation, perturbation_section
from PIL import Image

from sherlock.perturbation.recipes import (
    Perturbation,
    PerturbationConfig,
    draw,
    perturb_image,
    record_rng,
    truncate,
)

SUMMARY = "<SUMMARY>I will count the apples.</SUMMARY>"
CAPTION = "<CAPTION>A table with three red apples.</CAPTION>"
REASONING = "<REASONING>There are three apples on the table and none elsewhere.</REASONING>"
CONCLUSION = "<CONCLUSION>3</CONCLUSION>"
RESPONSE = f"{SUMMARY}\n{CAPTION}\n{REASONING}\n{CONCLUSION}"

REFERENCE = perturbation({"recipe": "reference"})
PAPER = perturbation({"recipe": "paper"})


def dynamic_weights(config: PerturbationConfig, p: Perturbation, beta=None, beta_refine=None):
    """(w, β_dpo, β_sc) of a draw, with the default β = 0.1 and β_r = 0.025."""
    return coefficients_of(config, beta, beta_refine).for_draw(p.truncation, p.noise_level)


# ---------------------------------------------------------------- config


def test_defaults_match_method() -> None:
    config = perturbation()
    assert config.recipe == "reference"
    assert config.reference.truncation_points == (0, 1, 2)
    assert (config.reference.noise_low, config.reference.noise_high) == (0.15, 0.25)
    assert config.reference.random_pixels_at_deepest is True
    preference = DEFAULT_CONFIG["preference"]["common"]
    assert (preference["pref_beta"], preference["pref_beta_refine"]) == (0.1, 0.025)
    assert config.paper.truncation_points == (1, 2, 3, 4)
    assert (config.paper.noise_low, config.paper.noise_high) == (0.0, 1.0)
    assert config.paper.beta_sc_scale == 0.25
    weight = config.weight
    assert (
        weight.offset,
        weight.depth_scale,
        weight.exponent_base,
        weight.exponent_noise_slope,
    ) == (0.5, 4.0, 0.5, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.recipe = "paper"  # type: ignore[misc]


def test_from_dict_full_shape() -> None:
    config = PerturbationConfig.from_dict(
        {
            "recipe": "paper",
            "reference": {
                "truncation_points": [1, 2],
                "noise_low": 0.1,
                "noise_high": 0.3,
                "random_pixels_at_deepest": False,
            },
            "paper": {
                "truncation_points": [2, 4],
                "noise_low": 0.2,
                "noise_high": 0.8,
                "beta_sc_scale": 0.5,
            },
            "weight": {
                "offset": 1.0,
                "depth_scale": 2.0,
                "exponent_base": 1.0,
                "exponent_noise_slope": 0.0,
            },
        }
    )
    assert config.recipe == "paper"
    assert config.reference.truncation_points == (1, 2)
    assert config.reference.random_pixels_at_deepest is False
    assert config.paper.truncation_points == (2, 4)
    assert config.paper.beta_sc_scale == 0.5
    assert config.weight.offset == 1.0
    # The constants really drive the formula: w = 1/(1 + (2/2)^1) = 0.5.
    weight, beta_dpo, beta_sc = dynamic_weights(config, Perturbation(2, 0.3, False), beta=0.3)
    assert (weight, beta_dpo, beta_sc) == pytest.approx((0.5, 0.3, 0.25))


def test_project_config_section_parses() -> None:
    path = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
    if not path.exists():
        pytest.skip("no config/config.yaml")
    section = yaml.safe_load(path.read_text(encoding="utf-8")).get("perturbation")
    config = PerturbationConfig.from_dict(section)
    assert config.recipe in ("reference", "paper")


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"recipe": "papr"}, "recipe"),
        ({"noise": 0.1}, "noise"),
        ({"reference": {"beta_r": 0.1}}, "beta_r"),
        ({"paper": {"random_pixels_at_deepest": True}}, "random_pixels_at_deepest"),
        ({"weight": {"scale": 4}}, "scale"),
        ({"reference": {"truncation_points": [0, 3]}}, "truncation_points"),
        ({"paper": {"truncation_points": [0, 1]}}, "truncation_points"),
        ({"paper": {"truncation_points": []}}, "truncation_points"),
        ({"reference": {"noise_low": 0.3, "noise_high": 0.2}}, "noise_low"),
        ({"paper": {"beta_sc_scale": None}}, "missing beta_sc_scale"),
        ({"weight": {"offset": None}}, "missing offset"),
    ],
)
def test_bad_config_raises_naming_the_key(bad: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        PerturbationConfig.from_dict(perturbation_section(bad))


def test_a_section_without_a_key_is_refused() -> None:
    section = perturbation_section()
    del section["weight"]
    with pytest.raises(ValueError, match="perturbation: missing weight"):
        PerturbationConfig.from_dict(section)


# ---------------------------------------------------------------- draws


def test_record_rng_is_stable_and_independent() -> None:
    first = record_rng(7, "rec-1", "offline").random(4)
    np.testing.assert_array_equal(first, record_rng(7, "rec-1", "offline").random(4))
    assert not np.array_equal(first, record_rng(7, "rec-2", "offline").random(4))
    assert not np.array_equal(first, record_rng(7, "rec-1", "online-1").random(4))
    assert not np.array_equal(first, record_rng(8, "rec-1", "offline").random(4))
    # Pinned value: fails if the seed ever comes from Python's salted hash() or changes scheme,
    # which would silently rebuild different pairs on a rerun.
    assert record_rng(20251, "rec-1", "offline").integers(0, 2**32, size=3).tolist() == [
        3856093526,
        3580805694,
        4112399305,
    ]


def test_draws_reproducible_per_record() -> None:
    for config in (REFERENCE, PAPER):
        a = draw(config, record_rng(3, "abc", "offline"))
        b = draw(config, record_rng(3, "abc", "offline"))
        assert a == b
    draws = {draw(PAPER, record_rng(3, f"id-{k}", "offline")) for k in range(20)}
    assert len(draws) == 20  # continuous ε: distinct records give distinct draws


def test_reference_draws_cover_points_and_deepest_is_random_pixels() -> None:
    draws = [draw(REFERENCE, record_rng(11, f"r{k}", "offline")) for k in range(600)]
    counts = {i: sum(d.truncation == i for d in draws) for i in (0, 1, 2)}
    assert set(counts) == {d.truncation for d in draws}
    assert all(120 < c < 280 for c in counts.values()), counts  # ~200 each
    for d in draws:
        if d.truncation == 2:
            assert d.random_pixels and d.noise_level == 1.0
        else:
            assert not d.random_pixels and 0.15 <= d.noise_level <= 0.25
    eps = [d.noise_level for d in draws if d.truncation != 2]
    assert min(eps) < 0.16 and max(eps) > 0.24  # spread over the whole interval


def test_reference_without_random_pixels_keeps_noise() -> None:
    config = perturbation({"reference": {"random_pixels_at_deepest": False}})
    draws = [draw(config, record_rng(11, f"r{k}", "offline")) for k in range(100)]
    assert not any(d.random_pixels for d in draws)
    assert all(0.15 <= d.noise_level <= 0.25 for d in draws)


def test_paper_draws_cover_points_and_unit_noise() -> None:
    draws = [draw(PAPER, record_rng(5, f"p{k}", "online-1")) for k in range(800)]
    counts = {i: sum(d.truncation == i for d in draws) for i in (1, 2, 3, 4)}
    assert {d.truncation for d in draws} == {1, 2, 3, 4}
    assert all(140 < c < 260 for c in counts.values()), counts  # ~200 each
    assert not any(d.random_pixels for d in draws)
    eps = np.array([d.noise_level for d in draws])
    assert eps.min() >= 0.0 and eps.max() <= 1.0
    assert eps.mean() == pytest.approx(0.5, abs=0.05)


# ---------------------------------------------------------------- truncation


def test_reference_truncation_heads() -> None:
    assert truncate(RESPONSE, 0, "reference") == ""
    assert truncate(RESPONSE, 1, "reference") == "<SUMMARY>I will count the apples.</SUMMARY>\n"
    assert truncate(RESPONSE, 2, "reference") == (
        "<SUMMARY>I will count the apples.</SUMMARY>\n"
        "<CAPTION>A table with three red apples.</CAPTION>\n"
    )


def test_paper_truncation_heads() -> None:
    assert truncate(RESPONSE, 1, "paper") == ""
    assert truncate(RESPONSE, 2, "paper") == "<SUMMARY>I will count the apples.</SUMMARY>\n"
    assert truncate(RESPONSE, 3, "paper") == (
        "<SUMMARY>I will count the apples.</SUMMARY>\n"
        "<CAPTION>A table with three red apples.</CAPTION>\n"
    )
    # Reasoning text has 55 characters; half = 27 falls inside "the", so the head moves back
    # to the space before it and ends right after "on".
    assert truncate(RESPONSE, 4, "paper") == (
        "<SUMMARY>I will count the apples.</SUMMARY>\n"
        "<CAPTION>A table with three red apples.</CAPTION>\n"
        "<REASONING>There are three apples on"
    )


@pytest.mark.parametrize(
    "reasoning, kept",
    [
        ("aaaa bbbb", "aaaa"),  # half = 4 is the space itself
        ("aa  bbbbbb", "aa"),  # half = 5 inside "bbbbbb"; trailing spaces trimmed
        ("one two three four", "one two"),  # half = 9 inside "three"
        ("unbreakable", ""),  # no whitespace before the half: no reasoning text kept
        ("  spaced", ""),  # only leading whitespace before the half
        ("", ""),
    ],
)
def test_paper_half_reasoning_never_splits_words(reasoning: str, kept: str) -> None:
    response = f"{SUMMARY}{CAPTION}<REASONING>{reasoning}</REASONING>{CONCLUSION}"
    head = truncate(response, 4, "paper")
    assert head == f"{SUMMARY}{CAPTION}<REASONING>{kept}"


def test_heads_are_always_string_prefixes() -> None:
    rng = np.random.default_rng(0)
    words = ["a", "bb", "ccc", "dddd", "\n", " ", "eeeee"]
    for _ in range(50):
        reasoning = " ".join(rng.choice(words, size=int(rng.integers(0, 12))))
        response = f"{SUMMARY} {CAPTION}\n\n{REASONING[:11]}{reasoning}</REASONING>{CONCLUSION}"
        for recipe, points in (("reference", (0, 1, 2)), ("paper", (1, 2, 3, 4))):
            for i in points:
                assert response.startswith(truncate(response, i, recipe))


def test_missing_tag_raises_naming_it() -> None:
    no_caption = f"{SUMMARY}{REASONING}{CONCLUSION}"
    with pytest.raises(ValueError, match="CAPTION"):
        truncate(no_caption, 1, "reference")
    with pytest.raises(ValueError, match="CAPTION"):
        truncate(no_caption, 2, "paper")
    no_reasoning = f"{SUMMARY}{CAPTION}{CONCLUSION}"
    with pytest.raises(ValueError, match="REASONING"):
        truncate(no_reasoning, 2, "reference")
    with pytest.raises(ValueError, match="REASONING"):
        truncate(no_reasoning, 4, "paper")
    unclosed = f"{SUMMARY}{CAPTION}<REASONING>half of it"
    with pytest.raises(ValueError, match="</REASONING>"):
        truncate(unclosed, 4, "paper")
    # The empty head needs no tag at all.
    assert truncate("no tags at all", 0, "reference") == ""


def test_bad_truncation_or_recipe_raises() -> None:
    with pytest.raises(ValueError, match="truncation point 3"):
        truncate(RESPONSE, 3, "reference")
    with pytest.raises(ValueError, match="truncation point 0"):
        truncate(RESPONSE, 0, "paper")
    with pytest.raises(ValueError, match="recipe"):
        truncate(RESPONSE, 1, "papers")


# ---------------------------------------------------------------- images


def _solid(value: int, size: int = 256) -> Image.Image:
    return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))


def test_gaussian_noise_statistics_on_grey() -> None:
    image = _solid(128)
    out = perturb_image(image, Perturbation(1, 0.1, False), np.random.default_rng(1))
    assert out.mode == "RGB" and out.size == image.size
    diff = np.asarray(out, dtype=np.float64) - 128.0
    assert diff.mean() == pytest.approx(0.0, abs=0.5)
    assert diff.std() == pytest.approx(0.1 * 255, rel=0.02)


def test_gaussian_noise_clips_instead_of_wrapping_on_black() -> None:
    out = np.asarray(
        perturb_image(_solid(0), Perturbation(1, 0.1, False), np.random.default_rng(2)),
        dtype=np.float64,
    )
    sigma = 0.1 * 255
    # Negative noise clips to 0; uint8 wrap-around would put half the pixels near 255.
    assert out.max() < 200
    assert (out == 0).mean() == pytest.approx(0.5, abs=0.02)
    assert out.mean() == pytest.approx(sigma / math.sqrt(2 * math.pi), abs=0.3)  # E[max(0, N)]


def test_noise_is_added_not_replaced_on_bright_image() -> None:
    out = np.asarray(
        perturb_image(_solid(250, 64), Perturbation(1, 0.1, False), np.random.default_rng(3))
    )
    assert out.max() == 255 and out.min() > 100  # clipped at the top, no wrap to 0


def test_zero_noise_is_identity() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    out = perturb_image(image, Perturbation(1, 0.0, False), np.random.default_rng(5))
    np.testing.assert_array_equal(np.asarray(out), pixels)


def test_greyscale_input_becomes_rgb() -> None:
    image = Image.fromarray(np.full((20, 10), 90, dtype=np.uint8))
    out = perturb_image(image, Perturbation(1, 0.2, False), np.random.default_rng(6))
    assert out.mode == "RGB" and out.size == (10, 20)


def test_random_pixels_replace_the_image() -> None:
    image = _solid(128)
    out = perturb_image(image, Perturbation(2, 1.0, True), np.random.default_rng(7))
    pixels = np.asarray(out, dtype=np.float64)
    assert out.mode == "RGB" and out.size == image.size
    assert not np.array_equal(pixels, np.asarray(image))
    assert pixels.mean() == pytest.approx(127.5, abs=1.0)
    assert pixels.std() == pytest.approx(math.sqrt((256**2 - 1) / 12), rel=0.02)  # U{0..255}
    assert pixels.min() == 0 and pixels.max() == 255


def test_image_perturbation_is_reproducible() -> None:
    image = _solid(100, 32)
    perturbation = Perturbation(1, 0.2, False)
    a = perturb_image(image, perturbation, record_rng(1, "x", "image"))
    b = perturb_image(image, perturbation, record_rng(1, "x", "image"))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- weights


def _w_independent(i: int, eps: float) -> float:
    return 1 / (0.5 + (i / 4) ** (0.5 + eps / 2))


def _beta_sc_paper_independent(i: int, eps: float) -> float:
    return 1 / (4 * (0.5 + (i / 4) ** (0.5 + eps / 2)))


def test_reference_weights_at_quoted_points() -> None:
    assert dynamic_weights(REFERENCE, Perturbation(0, 0.2, False)) == pytest.approx(
        (2.0, 0.2, 0.05)
    )
    weight, beta_dpo, beta_sc = dynamic_weights(REFERENCE, Perturbation(1, 0.2, False))
    assert weight == pytest.approx(1.07, abs=0.005)
    assert weight == pytest.approx(1 / (0.5 + 0.25**0.6), rel=1e-12)
    assert (beta_dpo, beta_sc) == pytest.approx((0.1 * weight, 0.025 * weight), rel=1e-12)
    assert dynamic_weights(REFERENCE, Perturbation(2, 1.0, True)) == pytest.approx(
        (1.0, 0.1, 0.025), rel=1e-12
    )


def test_paper_weights_at_quoted_points() -> None:
    weight, beta_dpo, beta_sc = dynamic_weights(PAPER, Perturbation(1, 0.0, False))
    assert (weight, beta_dpo, beta_sc) == pytest.approx((1.0, 0.1, 0.25), rel=1e-12)
    weight, beta_dpo, beta_sc = dynamic_weights(PAPER, Perturbation(4, 1.0, False))
    assert beta_dpo == 0.1
    assert beta_sc == pytest.approx(1 / 6, rel=1e-12)
    assert beta_sc == pytest.approx(0.1667, abs=1e-4)
    assert weight == pytest.approx(2 / 3, rel=1e-12)


def test_weights_match_independent_formula_at_random_points() -> None:
    rng = np.random.default_rng(9)
    for _ in range(25):
        eps = float(rng.uniform(0, 1))
        i_ref = int(rng.integers(0, 3))
        weight, beta_dpo, beta_sc = dynamic_weights(REFERENCE, Perturbation(i_ref, eps, False))
        w = _w_independent(i_ref, eps)
        assert (weight, beta_dpo, beta_sc) == pytest.approx((w, 0.1 * w, 0.025 * w), rel=1e-12)
        i_paper = int(rng.integers(1, 5))
        weight, beta_dpo, beta_sc = dynamic_weights(PAPER, Perturbation(i_paper, eps, False))
        assert weight == pytest.approx(_w_independent(i_paper, eps), rel=1e-12)
        assert beta_dpo == 0.1
        assert beta_sc == pytest.approx(_beta_sc_paper_independent(i_paper, eps), rel=1e-12)


def test_paper_beta_sc_falls_with_depth() -> None:
    betas = [dynamic_weights(PAPER, Perturbation(i, 0.5, False))[2] for i in (1, 2, 3, 4)]
    assert betas == sorted(betas, reverse=True)


# ---------------------------------------------------------------- offline pairs' rejected head


@pytest.mark.parametrize("prefill", [True, False])
def test_offline_pairs_with_and_without_the_rejected_head(tmp_path: Path, prefill: bool) -> None:
    """offline.rejected_prefill: the continuation always starts from the head of Y*; `none`
    leaves prefix_l empty (as the authors' offline run read its records), so training targets
    the whole rejected response after no pre-fill."""
    from sherlock.generation import GenerationBackend, SamplingParams
    from sherlock.perturbation.pairs import PairSource, generate_pairs, plan_pairs
    from sherlock.preference.encoding import sequence_specs
    from sherlock.preference.records import parse_preference_row

    class Continue(GenerationBackend):
        def generate(self, requests, sampling):
            self.requests = list(requests)
            return ["<REASONING>Two.</REASONING>\n<CONCLUSION>2</CONCLUSION>" for _ in requests]

    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (120, 30, 200)).save(image)
    # i = 2 under the reference recipe: the head is SUMMARY + CAPTION
    config = perturbation({"recipe": "reference", "reference": {"truncation_points": [2]}})
    source = PairSource("a", str(image), "How many?", chosen=RESPONSE, truncation_source=RESPONSE)
    planned = plan_pairs([source], config, 7, "offline", tmp_path / "noisy")
    backend = Continue()
    [row] = generate_pairs(
        planned, backend, SamplingParams(0.7, 1.0, 16, 0), config, "sft", None, prefill
    )
    head = f"{SUMMARY}\n{CAPTION}\n"
    continuation = "<REASONING>Two.</REASONING>\n<CONCLUSION>2</CONCLUSION>"
    assert backend.requests[0].assistant_prefix == head  # generated from the head either way
    assert row["prefix"] == head and row["rejected"]["value"] == head + continuation
    assert row["prefix_l"] == (head if prefill else "")
    example = parse_preference_row(row, 0, "offline_prefs.json")
    specs = {
        name: (spec.assistant_prefix, spec.target)
        for name, spec in sequence_specs(example, "{Question}|{Example_Response}").items()
    }
    rest_w = RESPONSE[len(head) :]
    for side in ("l", "w"):
        assert specs[f"{side}_A1"] == (head, rest_w)
        assert specs[f"{side}_B2"] == (head, continuation)  # never the head twice
        if prefill:  # A2 = A1 and B2 = B1
            assert specs[f"{side}_B1"] == (head, continuation)
            assert specs[f"{side}_A2"] == (head, rest_w)
        else:  # under p_l = "": whole responses, nothing skipped
            assert specs[f"{side}_B1"] == ("", head + continuation)
            assert specs[f"{side}_A2"] == ("", RESPONSE)
