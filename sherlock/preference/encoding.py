"""One preference record → the ten (context, target) sequences of the Sherlock objective.

docs/method.md §6, with x the question (+ image), C_l = REFINE(x, Y_l), C_w = REFINE(x, Y_w):

    direct_w = (x, Y_w)             direct_l = (x, Y_l)
    l_A1 = (C_l ⊕ p_w, s_w)   l_B1 = (C_l ⊕ p_l, s_l)
    l_A2 = (C_l ⊕ p_l, s_w)   l_B2 = (C_l ⊕ p_w, s_l)
    w_A1 … w_B2: the same four with C_w

A target never repeats or skips text: the cross pairs A2 and B2 continue the other side's head
with the rest of their own response when that response starts with the head (an offline record
without a pre-filled rejected head, ``prefix_l = ""``: A2 is then the whole Y_w after no
pre-fill), and with their own suffix s_w or s_l otherwise (an online record, whose heads differ).

Every sequence carries the image. A pre-filled prefix is rendered inside the assistant turn by the
model's own chat template (``sherlock.data.chat.render_prompt``), so it is context; the labels cover
exactly the target tokens plus the tokens the template closes an assistant turn with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from sherlock.data.chat import encode_prompts, render_prompt
from sherlock.data.images import PixelLimits, fit_pixels
from sherlock.data.prompts import refine_prompt
from sherlock.preference.losses import SEQUENCE_NAMES
from sherlock.preference.records import PreferenceExample
from sherlock.preference.vision_sharing import shared_vision_inputs

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SequenceSpec:
    """What one of the ten sequences is made of, as text."""

    user_text: str
    assistant_prefix: str
    target: str


def _after(response: str, head: str, own_suffix: str) -> str:
    """What follows ``head`` pre-filled: the rest of ``response`` when it starts with ``head``,
    else ``response`` after its own head (``own_suffix``)."""
    return response[len(head) :] if response.startswith(head) else own_suffix


def sequence_specs(example: PreferenceExample, refine_template: str) -> dict[str, SequenceSpec]:
    """The ten sequences of one record, by their docs/method.md §6 names."""
    q, p_w, p_l = example.question, example.prefix, example.prefix_l
    s_w, s_l = example.suffix_w, example.suffix_l
    c_l = refine_prompt(refine_template, q, example.rejected)
    c_w = refine_prompt(refine_template, q, example.chosen)
    specs = {
        "direct_w": SequenceSpec(q, "", example.chosen),
        "direct_l": SequenceSpec(q, "", example.rejected),
    }
    # The cross pairs: the chosen text after the rejected head, the rejected after the chosen.
    s_w_after_p_l = _after(example.chosen, p_l, s_w)
    s_l_after_p_w = _after(example.rejected, p_w, s_l)
    for tag, context in (("l", c_l), ("w", c_w)):
        specs[f"{tag}_A1"] = SequenceSpec(context, p_w, s_w)
        specs[f"{tag}_B1"] = SequenceSpec(context, p_l, s_l)
        specs[f"{tag}_A2"] = SequenceSpec(context, p_l, s_w_after_p_l)
        specs[f"{tag}_B2"] = SequenceSpec(context, p_w, s_l_after_p_w)
    assert tuple(specs) == SEQUENCE_NAMES
    return specs


_MARK = "\u2063TARGET\u2063"  # text no template writes, to find where a turn's content ends


def turn_closing_ids(processor: Any) -> list[int]:
    """The tokens the model's own chat template writes after an assistant turn's content.

    Qwen: ``<|im_end|>`` and a newline; Llama 3: ``<|eot_id|>``. LLaMA-Factory trains Stage I on
    exactly these after the response, so the preference targets end the same way.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": _MARK}]},
    ]
    rendered = processor.apply_chat_template(messages, tokenize=False)
    closing = rendered.split(_MARK, 1)[1] if _MARK in rendered else ""
    if not closing:
        if tokenizer.eos_token_id is None:
            raise ValueError("neither the chat template nor the tokenizer closes an assistant turn")
        return [int(tokenizer.eos_token_id)]
    return list(tokenizer(closing, add_special_tokens=False)["input_ids"])


def encode_sequences(
    processor: Any, image: Image.Image, specs: list[SequenceSpec], cutoff_len: int | None = None
) -> list[dict[str, Any]]:
    """Token ids, labels and the processor's vision tensors of sequences sharing one image.

    One processor call for all of them: its per-call overhead (keyword validation) costs more
    than the tokenisation itself. Rows are padded in that call and un-padded here with the
    attention mask, whichever side the processor pads. Since every row carries the same image,
    a vision tensor stacked along its first dimension splits into equal per-row chunks.
    Tensors whose second dimension runs along the tokens (Qwen2-VL's ``mm_token_type_ids``,
    Llama-3.2-Vision's ``cross_attention_mask``) are extended over the target by repeating their
    last position.
    """
    count = len(specs)
    prompts = [render_prompt(processor, s.user_text, s.assistant_prefix) for s in specs]
    encoded = encode_prompts(processor, prompts, [image] * count, padding=True, return_tensors="pt")
    padded_ids = encoded.pop("input_ids")
    keep = encoded.pop("attention_mask").bool()
    tokenizer = getattr(processor, "tokenizer", processor)
    closing = turn_closing_ids(processor)
    targets = tokenizer([s.target for s in specs], add_special_tokens=False)["input_ids"]
    sequences = []
    for row in range(count):
        prompt_ids = padded_ids[row][keep[row]]
        target = torch.tensor([*targets[row], *closing], dtype=torch.long)
        if cutoff_len is not None:
            room = cutoff_len - len(prompt_ids)
            if room < 1:
                raise ValueError(
                    f"the prompt alone has {len(prompt_ids)} tokens, "
                    f"more than cutoff_len {cutoff_len}"
                )
            target = target[:room]  # policy and reference see the same cut: Δ stays consistent
        vision, token_aligned = {}, set()
        for key, value in encoded.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                continue
            if value.dim() >= 2 and value.shape[0] == count and value.shape[1] == keep.shape[1]:
                value = value[row][keep[row]].unsqueeze(0)
                tail = value[:, -1:].expand(-1, len(target), *value.shape[2:])
                value = torch.cat([value, tail], dim=1)
                token_aligned.add(key)
            elif value.shape[0] % count == 0:
                chunk = value.shape[0] // count
                value = value[row * chunk : (row + 1) * chunk]
            else:
                raise ValueError(
                    f"cannot split the processor's {key} of shape {tuple(value.shape)} "
                    f"into {count} sequences"
                )
            vision[key] = value
        sequences.append(
            {
                "input_ids": torch.cat([prompt_ids, target]),
                "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), target]),
                "vision": vision,
                "token_aligned": token_aligned,
            }
        )
    return sequences


def encode_sequence(
    processor: Any, image: Image.Image, spec: SequenceSpec, cutoff_len: int | None = None
) -> dict[str, Any]:
    """One sequence (see ``encode_sequences``)."""
    return encode_sequences(processor, image, [spec], cutoff_len)[0]


def record_image(example: PreferenceExample, pixels: PixelLimits | None = None) -> Image.Image:
    """The record's image in RGB, scaled into ``pixels`` = (min, max[, filter]) as Stage I trains
    and generation answers (``sherlock.data.images.fit_pixels``); as stored when None."""
    with Image.open(example.image) as handle:
        image = handle.convert("RGB")
    return image if pixels is None else fit_pixels(image, *pixels)


def encode_example(
    processor: Any,
    example: PreferenceExample,
    refine_template: str,
    cutoff_len: int | None = None,
    pixels: PixelLimits | None = None,
) -> list[dict[str, Any]]:
    """The ten encoded sequences of one record, in SEQUENCE_NAMES order."""
    image = record_image(example, pixels)
    specs = sequence_specs(example, refine_template)
    return encode_sequences(processor, image, [specs[name] for name in SEQUENCE_NAMES], cutoff_len)


def collate_sequences(sequences: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch of sequences; vision tensors concatenated in sequence order."""
    length = max(len(s["input_ids"]) for s in sequences)
    count = len(sequences)
    input_ids = torch.full((count, length), pad_id, dtype=torch.long)
    labels = torch.full((count, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((count, length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        n = len(sequence["input_ids"])
        input_ids[row, :n] = sequence["input_ids"]
        labels[row, :n] = sequence["labels"]
        attention_mask[row, :n] = 1
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
    }
    for key in sequences[0]["vision"]:
        parts = [s["vision"][key] for s in sequences]
        if key in sequences[0]["token_aligned"]:  # pad along the tokens with zeros
            parts = [
                torch.cat(
                    [
                        part,
                        part.new_zeros((part.shape[0], length - part.shape[1], *part.shape[2:])),
                    ],
                    dim=1,
                )
                for part in parts
            ]
        batch[key] = torch.cat(parts, dim=0)
    return batch


def sequence_log_probs(
    model: Any, batch: dict[str, Any], images: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed target log-probabilities and target token counts, one per sequence.

    ``images`` numbers each row's image: given, rows with the same number share one pass of
    their image through the vision tower (``sherlock.preference.vision_sharing``).
    """
    # Here, not at the top: the pair builders encode in the vLLM environment, which has no TRL.
    from trl.trainer.utils import selective_log_softmax

    labels = batch["labels"]
    inputs = shared_vision_inputs(model, {k: v for k, v in batch.items() if k != "labels"}, images)
    # The LM head runs only from the position predicting the batch's earliest target token on:
    # the (often long) context before it needs no vocabulary-wide logits.
    first_target = (labels != IGNORE_INDEX).int().argmax(-1).min().item()
    start = max(int(first_target) - 1, 0)
    logits = model(**inputs, use_cache=False, logits_to_keep=labels.shape[1] - start).logits
    logits = logits[:, :-1]
    targets = labels[:, start + 1 :]
    mask = targets != IGNORE_INDEX
    # Only target positions go through the (vocabulary-wide) softmax: the context is most of
    # every sequence, and float32 logits over all of it would dominate memory.
    token_logps = selective_log_softmax(logits[mask].float(), targets[mask])
    rows = mask.nonzero()[:, 0]
    sums = torch.zeros(len(labels), dtype=token_logps.dtype, device=token_logps.device)
    return sums.index_add(0, rows, token_logps), mask.sum(-1)
