"""Timed steps of our own code on a model built by ``sherlock.gpucheck.models``.

- The Sherlock preference step: ``SherlockTrainer.training_step`` (the ten sequences of each
  record encoded by ``sherlock.preference.encoding``, collated by ``PreferenceCollator``, the loss
  of ``sherlock.preference.losses``, the backward pass), with the trainer's freezing
  (``sherlock.preference.freezing``), vision sharing on or off, gradient checkpointing as the
  config says; the reference table computed first by ``precompute_reference``. The optimizer
  step is not timed (the presets run it under DeepSpeed, once per 32 records).
- The SFT step: a plain causal-language-model loss step (the model's own loss, forward and
  backward) at Stage I's per-device batch and cutoff, on sequences encoded as LLaMA-Factory
  encodes them (``encode_sequences``; token equality is tested in tests/test_template_equality),
  with Stage I's freezing and gradient checkpointing (LLaMA-Factory's default). LLaMA-Factory's
  own trainer is not driven: it needs its dataset files and a run folder per step.
- Generation: ``sherlock.generation.hf.TransformersBackend`` over the same requests, batched
  (``generation.batch_size``) and one prompt per call.

Records are synthetic: a noise image at the run's largest image size, and texts of the
workload's token counts in the processor's tokenizer. Model FLOPs come from
``sherlock.gpucheck.flops`` for the exact token counts of each batch (padding not counted);
utilisation is measured against the GPU's peak (``sherlock.gpucheck.hardware``).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sherlock.data.response import STAGES
from sherlock.gpucheck.architectures import ModelShape
from sherlock.gpucheck.flops import Training, training_flops
from sherlock.preference.records import PreferenceExample

STAGE_SHARES = {"SUMMARY": 0.1, "CAPTION": 0.25, "REASONING": 0.55, "CONCLUSION": 0.1}


@dataclass
class Timing:
    """One measured thing: a median over ``repeats`` after warm-up."""

    name: str
    seconds: float  # per step (training) or per call (generation)
    repeats: int
    records: int  # records per step, or requests per call
    tokens: int  # tokens processed (training) or generated (generation)
    flops: float | None = None  # model FLOPs per step
    mfu: float | None = None
    peak_memory_gib: float | None = None
    note: str = ""

    @property
    def seconds_per_record(self) -> float:
        return self.seconds / max(self.records, 1)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds_per_record": self.seconds_per_record,
            "tokens_per_second": self.tokens_per_second,
        }


# ------------------------------------------------------------------------------- the records


def _words(tokenizer: Any) -> list[str]:
    vocab = [t for t in tokenizer.get_vocab() if t.isalpha() and t.isascii() and len(t) > 2]
    return sorted(vocab)[:500] or ["shape", "colour", "circle", "square"]


def text_of(tokenizer: Any, count: int, rng: random.Random, words: list[str]) -> str:
    """Words drawn from the tokenizer's vocabulary until the text is ``count`` tokens long."""
    text = ""
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < count:
        text += " " + " ".join(rng.choice(words) for _ in range(max(1, count // 4)))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:count]
    return tokenizer.decode(ids).strip() or "shape"


def answer_of(tokenizer: Any, count: int, rng: random.Random, words: list[str]) -> str:
    """A four-stage answer of about ``count`` tokens."""
    parts = []
    for stage in STAGES:
        body = text_of(tokenizer, max(2, int(count * STAGE_SHARES[stage]) - 4), rng, words)
        parts.append(f"<{stage}>{body}</{stage}>")
    return "".join(parts)


def noise_image(folder: Path, max_pixels: int, seed: int = 0) -> Path:
    """A random RGB picture at the largest square size ``max_pixels`` allows."""
    side = max(28, int(max_pixels**0.5))
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=generator)
    path = folder / f"noise_{side}.png"
    Image.fromarray(pixels.numpy()).save(path)
    return path


def preference_examples(
    tokenizer: Any, image: Path, count: int, question: int, answer: int, recipe: str, seed: int = 0
) -> list[PreferenceExample]:
    """Offline-style pairs (p_w = p_l, the head of the chosen answer up to its CAPTION)."""
    from sherlock.perturbation.recipes import truncate

    rng = random.Random(seed)
    words = _words(tokenizer)
    point = 1 if recipe == "reference" else 2  # SUMMARY kept
    examples = []
    for index in range(count):
        chosen = answer_of(tokenizer, answer, rng, words)
        prefix = truncate(chosen, point, recipe)
        rejected = prefix + answer_of(tokenizer, answer, rng, words)[len(prefix) :]
        examples.append(
            PreferenceExample(
                id=f"gpucheck-{index}",
                image=str(image),
                question=text_of(tokenizer, question, rng, words),
                chosen=chosen,
                rejected=rejected,
                prefix=prefix,
                prefix_l=prefix,
                truncation=point,
                noise_level=0.5,
            )
        )
    return examples


# ------------------------------------------------------------------------------------ timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(run: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall seconds of ``run`` over ``repeats`` calls after ``warmup`` calls."""
    times = []
    for index in range(warmup + repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch_flops(
    shape: ModelShape, training: Training, batch: dict[str, Any], images: float, max_pixels: int
) -> float:
    """Model FLOPs of a collated batch: each row's own tokens and targets (no padding)."""
    tokens = batch["attention_mask"].sum(-1).tolist()
    targets = (batch["labels"] != -100).sum(-1).tolist()
    return sum(
        training_flops(shape, training, n, t, images, max_pixels)
        for n, t in zip(tokens, targets, strict=True)
    )


# ----------------------------------------------------------------------- the Sherlock step


@dataclass(frozen=True)
class StepSettings:
    """How a stage trains, as the config says (and how the step is timed)."""

    training: Training
    gradient_checkpointing: bool
    bf16: bool
    cutoff: int | None
    pixels: tuple[int, int]
    repeats: int = 3
    warmup: int = 1


def _to_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    return {
        k: (v.to(device, dtype) if v.is_floating_point() and k == "pixel_values" else v.to(device))
        if torch.is_tensor(v)
        else v
        for k, v in batch.items()
    }


def _checkpointing(model: Any, on: bool, kwargs: dict | None = None) -> None:
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()


def sherlock_trainer(
    model: Any,
    processor: Any,
    examples: list[PreferenceExample],
    config: dict[str, Any],
    settings: StepSettings,
    share: bool,
    batch_records: int,
    output_dir: Path,
) -> Any:
    """Our SherlockTrainer over ``examples``, with the preference stage's hyper-parameters."""
    from sherlock.data.prompts import load_prompt, refine_choice
    from sherlock.preference.arguments import SherlockConfig
    from sherlock.preference.coefficients import Coefficients
    from sherlock.preference.trainer import PreferenceCollator, PreferenceDataset, SherlockTrainer

    hp = {**config["preference"]["common"], **config["preference"]["offline"]}
    t = settings.training
    args = SherlockConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_records,
        per_device_eval_batch_size=batch_records,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        beta=hp["pref_beta"],
        beta_refine=hp["pref_beta_refine"],
        dpo_coef=hp["dpo_coef"],
        sc_coef=hp["sc_coef"],
        rpo_alpha=hp.get("pref_ftx") or None,
        max_length=settings.cutoff,
        freeze_vision_tower=t.freeze_vision,
        freeze_multi_modal_projector=t.freeze_projector,
        freeze_language_model=t.freeze_language,
        share_vision_features=share,
        precompute_ref_log_probs=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=model.device.type == "cpu",
        dataloader_num_workers=0,
        nonfinite_steps=hp.get("nonfinite_steps") or "stop",
    )
    coefficients = Coefficients.from_perturbation(
        config["perturbation"], args.beta, args.beta_refine
    )
    dataset = PreferenceDataset(
        examples,
        processor,
        load_prompt("refine", refine_choice(config["prompts"].get("refine"), "preference")),
        coefficients,
        settings.cutoff,
        settings.pixels,
    )
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    trainer = SherlockTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PreferenceCollator(pad),
        processing_class=processor,
    )
    trainer.current_gradient_accumulation_steps = 1  # one micro-batch per step, as train() sets
    _checkpointing(
        trainer.model, settings.gradient_checkpointing, args.gradient_checkpointing_kwargs
    )
    return trainer


def sherlock_step(
    model: Any,
    processor: Any,
    examples: list[PreferenceExample],
    config: dict[str, Any],
    settings: StepSettings,
    share: bool,
    shape: ModelShape,
    output_dir: Path,
    peak_flops: float | None,
    batch_records: int,
) -> tuple[Timing, Timing]:
    """(the training step, the reference pass per record) with vision sharing ``share``."""
    device = model.device
    trainer = sherlock_trainer(
        model, processor, examples, config, settings, share, batch_records, output_dir
    )
    reset_peak(device)
    synchronize(device)
    start = time.perf_counter()
    trainer.precompute_reference()
    synchronize(device)
    reference_seconds = time.perf_counter() - start
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[i] for i in range(batch_records)])
    rows = len(batch["input_ids"])
    inputs = _to_device(batch, device, model.dtype)

    def step() -> None:
        trainer.training_step(trainer.model, inputs)
        trainer.model.zero_grad(set_to_none=True)

    reset_peak(device)
    seconds = timed(step, device, settings.repeats, settings.warmup)
    images = batch_records / rows if share else 1.0
    flops = batch_flops(shape, settings.training, batch, images, settings.pixels[1])
    label = "shared" if share else "per sequence"
    note = f"{rows} distinct sequences of {10 * batch_records}; vision {label}"
    step_timing = Timing(
        f"Sherlock step, vision {label}",
        seconds,
        settings.repeats,
        batch_records,
        int(batch["attention_mask"].sum()),
        flops,
        flops / seconds / peak_flops if peak_flops else None,
        peak_gib(device),
        note,
    )
    reference = Timing(
        f"reference pass, vision {label}",
        reference_seconds,
        1,
        len(dataset),
        0,
        note=f"precompute_reference over {len(dataset)} records",
    )
    _checkpointing(trainer.model, False)
    reset_peak(device)
    return step_timing, reference


# ----------------------------------------------------------------------------- the SFT step


def sft_batch(
    processor: Any, example: PreferenceExample, batch: int, settings: StepSettings
) -> dict[str, Any]:
    """``batch`` copies of (question → chosen answer), encoded as Stage I trains on them."""
    from sherlock.preference.encoding import (
        SequenceSpec,
        collate_sequences,
        encode_sequences,
        record_image,
    )

    image = record_image(example, settings.pixels)
    spec = SequenceSpec(example.question, "", example.chosen)
    sequences = encode_sequences(processor, image, [spec] * batch, settings.cutoff)
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return collate_sequences(sequences, pad)


def prepare_sft(model: Any, settings: StepSettings) -> None:
    """Stage I's freezing (LLaMA-Factory's modules) and gradient checkpointing."""
    from sherlock.preference.freezing import freeze

    for parameter in model.parameters():
        parameter.requires_grad_(True)
    t = settings.training
    freeze(model, t.freeze_vision, t.freeze_projector, t.freeze_language)
    _checkpointing(model, settings.gradient_checkpointing, {"use_reentrant": False})
    model.train()


def sft_step(
    model: Any,
    processor: Any,
    example: PreferenceExample,
    settings: StepSettings,
    batch: int,
    shape: ModelShape,
    peak_flops: float | None,
) -> Timing:
    device = model.device
    prepare_sft(model, settings)
    collated = sft_batch(processor, example, batch, settings)
    inputs = _to_device(collated, device, model.dtype)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16)

    def step() -> None:
        with autocast:
            loss = model(**inputs, use_cache=False).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    reset_peak(device)
    seconds = timed(step, device, settings.repeats, settings.warmup)
    flops = batch_flops(shape, settings.training, collated, 1.0, settings.pixels[1])
    _checkpointing(model, False)
    model.eval()
    return Timing(
        "SFT step (causal-LM loss)",
        seconds,
        settings.repeats,
        batch,
        int(collated["attention_mask"].sum()),
        flops,
        flops / seconds / peak_flops if peak_flops else None,
        peak_gib(device),
        f"{batch} sequences of {collated['input_ids'].shape[1]} tokens",
    )


# ---------------------------------------------------------------------------- generation


class CountingModel:
    """A model whose ``generate`` counts the tokens it writes (up to each row's end of turn)."""

    def __init__(self, model: Any, eos: list[int]) -> None:
        self.model = model
        self.eos = eos
        self.generated = 0

    def generate(self, **kwargs: Any) -> torch.Tensor:
        out = self.model.generate(**kwargs)
        new = out[:, kwargs["input_ids"].shape[1] :]
        ended = torch.zeros_like(new, dtype=torch.bool)
        for token in self.eos:
            ended |= new == token
        # A row's tokens up to and including its first end of turn; the rest is padding.
        after = ended.int().cumsum(-1) - ended.int()
        self.generated += int((after == 0).sum())
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def generation(
    model: Any,
    processor: Any,
    image: Path,
    prompts: list[str],
    batch: int,
    max_new_tokens: int,
    sampling: dict[str, float],
    pixels: tuple[int, int],
    seed: int,
) -> tuple[Timing, Timing]:
    """(batched, one prompt per call) over the same requests."""
    from sherlock.generation.base import GenerationRequest, SamplingParams
    from sherlock.generation.hf import TransformersBackend

    backend = TransformersBackend.from_model(
        model, processor, batch_size=batch, image_min_pixels=pixels[0], image_max_pixels=pixels[1]
    )
    counter = CountingModel(model, backend.eos_token_ids)
    backend.model = counter
    requests = [GenerationRequest(str(i), str(image), p) for i, p in enumerate(prompts)]
    params = SamplingParams(sampling["temperature"], sampling["top_p"], max_new_tokens, seed)
    device = model.device
    backend.generate(requests[:1], SamplingParams(0.0, 1.0, 2, seed))  # warm-up
    results = []
    for size, name in ((batch, f"generation, batch {batch}"), (1, "generation, one per call")):
        backend.batch_size = size
        counter.generated = 0
        reset_peak(device)
        seconds = timed(lambda: backend.generate(requests, params), device, 1, 0)
        results.append(
            Timing(
                name,
                seconds,
                1,
                len(requests),
                counter.generated,
                peak_memory_gib=peak_gib(device),
                note=f"{len(requests)} requests, at most {max_new_tokens} new tokens each",
            )
        )
    return results[0], results[1]


# ----------------------------------------------------------------------- largest batch


def largest_batch(try_batch: Callable[[int], None], device: torch.device, cap: int) -> str:
    """The largest power-of-two batch ``try_batch`` runs without running out of GPU memory."""
    if device.type != "cuda":
        return "not searched (CPU)"
    best, size, stop = None, 1, f"cap {cap} reached"
    while size <= cap:
        try:
            try_batch(size)
        except torch.cuda.OutOfMemoryError:
            stop = f"out of memory at {size}"
            break
        finally:
            reset_peak(device)
        best, size = size, size * 2
    return f"{best} ({stop})" if best else f"none ({stop})"
