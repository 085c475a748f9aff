"""Perturbed continuations → preference records (docs/method.md §4, used by stages II and III).

For each item, draw (i, ε) from a per-record seeded stream, cut the reference response at
truncation point i, perturb the image, and let the model continue the assistant turn from the
prefix on the perturbed image, for the original question. The rejected response is
prefix + continuation; the record keeps the ORIGINAL image for training.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from sherlock.data.images import pixel_limits
from sherlock.data.prompts import load_prompt
from sherlock.data.response import CONCLUSION_END, extract_answer
from sherlock.data.sharegpt import write_json
from sherlock.generation import GenerationBackend, GenerationRequest, SamplingParams
from sherlock.generation.job import finish_job
from sherlock.generation.resumable import ResumableBackend
from sherlock.perturbation.recipes import (
    Perturbation,
    PerturbationConfig,
    draw,
    perturb_image,
    record_rng,
    truncate,
)
from sherlock.preference.lengths import overlong_records
from sherlock.preference.records import PreferenceExample, parse_preference_row, preference_row
from sherlock.runtime import atomic


@dataclass(frozen=True)
class PairSource:
    """One item to build a pair from.

    ``chosen`` is the preferred whole response; ``truncation_source`` is the response whose
    head becomes the rejected prefix (offline: Y* for both; online: y3 and y0).
    """

    id: str
    image: str
    question: str
    chosen: str
    truncation_source: str


def _file_name(record_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", record_id) + ".png"


@dataclass(frozen=True)
class PlannedPair:
    source: PairSource
    perturbation: Perturbation
    prefix: str
    prefix_l: str
    perturbed_image: str


def plan_pairs(
    sources: list[PairSource],
    config: PerturbationConfig,
    seed: int,
    purpose: str,
    image_dir: str | Path,
    keep: Callable[[int], bool] | None = None,
) -> list[PlannedPair]:
    """Draw i and ε per record, cut the prefixes and write the perturbed images.

    With ``keep``, only the images of the positions it accepts are made (a shard job's share);
    the draws come from per-record streams, so they do not depend on which are skipped.
    """
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    planned = []
    for position, source in enumerate(sources):
        rng = record_rng(seed, source.id, purpose)
        perturbation = draw(config, rng)
        try:
            prefix = truncate(source.chosen, perturbation.truncation, config.recipe)
            prefix_l = truncate(source.truncation_source, perturbation.truncation, config.recipe)
        except ValueError as error:
            raise ValueError(
                f"record {source.id}: cannot cut at truncation point "
                f"{perturbation.truncation}: {error}"
            ) from error
        path = image_dir / _file_name(source.id)
        if keep is None or keep(position):
            with Image.open(source.image) as handle:
                noisy = perturb_image(handle.convert("RGB"), perturbation, rng)
            noisy.save(path)
        planned.append(PlannedPair(source, perturbation, prefix, prefix_l, str(path)))
    return planned


def generate_pairs(
    planned: list[PlannedPair],
    backend: GenerationBackend,
    sampling: SamplingParams,
    config: PerturbationConfig,
    model: str,
    provenance: dict[str, Any] | None = None,
    prefill_rejected: bool = True,
) -> list[dict[str, Any]]:
    """Continue every rejected prefix on its perturbed image, in batches; build the records.

    ``provenance`` (e.g. the online iteration) is added to every record. Without
    ``prefill_rejected`` a record's ``prefix_l`` is empty: training then pre-fills nothing
    before the rejected side (the continuation was still generated from the head).
    """
    requests = [
        GenerationRequest(
            key=p.source.id,
            image=p.perturbed_image,
            user_text=p.source.question,
            assistant_prefix=p.prefix_l,
        )
        for p in planned
    ]
    continuations = backend.generate(requests, sampling)
    rows = []
    for pair, continuation in zip(planned, continuations, strict=True):
        # w only: β and β_sc are the trainer's (sherlock.preference.coefficients).
        weight = config.weight(pair.perturbation.truncation, pair.perturbation.noise_level)
        example = PreferenceExample(
            id=pair.source.id,
            image=pair.source.image,
            question=pair.source.question,
            chosen=pair.source.chosen,
            rejected=pair.prefix_l + continuation,
            prefix=pair.prefix,
            prefix_l=pair.prefix_l if prefill_rejected else "",
            weight=weight,
            truncation=pair.perturbation.truncation,
            noise_level=pair.perturbation.noise_level,
        )
        rows.append(
            preference_row(
                example,
                source_id=pair.source.id,
                model=model,
                recipe=config.recipe,
                random_pixels=pair.perturbation.random_pixels,
                perturbed_image=pair.perturbed_image,
                **(provenance or {}),
            )
        )
    return rows


def pair_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a user wants to know of a preference file at a glance."""
    rejected = [row["rejected"]["value"] for row in rows]
    return {
        "records": len(rows),
        "truncation_counts": dict(sorted(Counter(row["truncation"] for row in rows).items())),
        "rejected_with_conclusion": sum(CONCLUSION_END in r for r in rejected),
        "rejected_equal_to_chosen": sum(
            row["chosen"]["value"] == r for row, r in zip(rows, rejected, strict=True)
        ),
        "rejected_answer_differs": sum(
            extract_answer(r) != extract_answer(row["chosen"]["value"])
            for row, r in zip(rows, rejected, strict=True)
        ),
    }


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every pair-building script takes besides generation (rules fill them)."""
    parser.add_argument("--perturbation", required=True, help="JSON of config 'perturbation'")
    parser.add_argument("--image-dir", required=True, help="where perturbed images go")
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument(
        "--cutoff-len",
        type=int,
        default=None,
        help="the training's cutoff_len: records whose context cannot fit are left out",
    )
    parser.add_argument(
        "--refine-prompt",
        default=None,
        help="refine prompt: a shipped wording (clean, trailing_spaces) or a custom file; "
        "default clean",
    )


def fitting_rows(
    rows: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows whose ten contexts fit ``--cutoff-len`` as the trainer will encode them (same
    processor, refine prompt and image size), and one line per row left out."""
    if args.cutoff_len is None or not rows:
        return rows, []
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    examples = [parse_preference_row(row, n, args.output) for n, row in enumerate(rows)]
    pixels = pixel_limits(args.image_min_pixels, args.image_max_pixels, args.image_resample)
    refine = load_prompt("refine", args.refine_prompt)
    too_long = overlong_records(processor, examples, refine, args.cutoff_len, pixels)
    kept = [row for n, row in enumerate(rows) if n not in too_long]
    return kept, list(too_long.values())


def build_pair_file(
    args: argparse.Namespace,
    sources: list[PairSource],
    backend: GenerationBackend,
    sampling: SamplingParams,
    purpose: str,
    summary_line: Callable[[dict[str, Any]], tuple[str, str]],
    provenance: dict[str, Any] | None = None,
    prefill_rejected: bool = True,
) -> None:
    """Plan and generate the pairs of ``sources``; then (not in a shard job, which only saves
    its chunks) write them and their statistics, and print ``summary_line(stats)``.
    ``prefill_rejected``: see :func:`generate_pairs`."""
    config = PerturbationConfig.from_dict(json.loads(args.perturbation))
    owns = backend.owns if isinstance(backend, ResumableBackend) else None
    planned = plan_pairs(sources, config, args.seed, purpose, args.image_dir, owns)
    rows = generate_pairs(
        planned, backend, sampling, config, args.model, provenance, prefill_rejected
    )

    def write_outputs() -> tuple[str, str]:
        # Caught here, not in an 8-GPU job's reference pass: left out, counted and named.
        kept, too_long = fitting_rows(rows, args)
        write_json(args.output, kept)
        stats = pair_stats(kept)
        step, line = summary_line({"recipe": config.recipe, **stats})
        if too_long:
            stats["left_out_too_long"] = {"count": len(too_long), "records": too_long}
            line += (
                f"; {len(too_long)} left out, longer than cutoff_len {args.cutoff_len} "
                f"(named in {args.summary})"
            )
        atomic.write_yaml(args.summary, stats)
        return step, line

    finish_job(args, backend, write_outputs)
