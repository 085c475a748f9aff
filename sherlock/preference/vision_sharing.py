"""Each record's image through the vision tower once per forward pass, for all its sequences.

The ten sequences of a record carry the same image (docs/method.md §6). The model's own forward
would run the vision tower once per sequence; here it runs once per distinct image, and the
features are handed to every sequence of that image through the model's public inputs:

- Qwen2-VL / Qwen2.5-VL: the merged patch embeddings (``get_image_features``) are scattered at
  each sequence's image tokens (``get_placeholder_mask``, as the model's forward does) into
  ``inputs_embeds``; ``input_ids``, ``image_grid_thw`` and ``mm_token_type_ids`` still go in, so
  the model computes its multimodal rotary positions exactly as without sharing.
- Llama-3.2-Vision (Mllama): the projected vision states go in as ``cross_attention_states``.

The per-sequence copies are index selections of one feature tensor, so backpropagation adds
the sequences' gradients into it: a trained vision tower gets exactly the sum it gets when each
sequence runs it. Any other architecture runs the model's own path, said once in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from sherlock.preference.lora import base_model

log = logging.getLogger(__name__)

_QWEN = ("qwen2_vl", "qwen2_5_vl")
_warned: set[str] = set()


def image_owners(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row's image number: (the first row of every distinct image, each row's position
    among those images), on the CPU: a handful of integers that index and loop."""
    images = images.cpu()
    distinct, position = torch.unique(images, return_inverse=True)  # sorted: deterministic order
    first = torch.stack([(images == value).nonzero()[0, 0] for value in distinct])
    return first, position


def _unwrapped(model: Any) -> Any:
    """The model itself under a DeepSpeed or DDP wrapper (their ``module``) and a peft adapter
    (whose layers it carries: the adapter, on or off, acts through them)."""
    return base_model(getattr(model, "module", model))


def _qwen_inputs(model: Any, inputs: dict[str, Any], images: torch.Tensor) -> dict[str, Any]:
    inner = _unwrapped(model)
    grid = inputs["image_grid_thw"]  # one image, hence one row, per sequence
    sizes = grid.prod(-1).tolist()  # the rows' patches, one after another in pixel_values
    starts = [sum(sizes[:row]) for row in range(len(sizes))]
    owners, position = image_owners(images)
    pixels = torch.cat(
        [inputs["pixel_values"][starts[r] : starts[r] + sizes[r]] for r in owners.tolist()]
    )
    owner_grid = grid[owners.to(grid.device)]
    features = inner.get_image_features(pixel_values=pixels, image_grid_thw=owner_grid)
    per_image = features.pooler_output  # one (tokens, hidden) tensor per image
    per_row = torch.cat([per_image[i] for i in position.tolist()])
    input_ids = inputs["input_ids"]
    embeds = inner.get_input_embeddings()(input_ids)
    per_row = per_row.to(embeds.device, embeds.dtype)
    mask, _ = inner.model.get_placeholder_mask(input_ids, embeds, image_features=per_row)
    shared = {k: v for k, v in inputs.items() if k != "pixel_values"}
    shared["inputs_embeds"] = embeds.masked_scatter(mask, per_row)
    return shared


def _mllama_inputs(model: Any, inputs: dict[str, Any], images: torch.Tensor) -> dict[str, Any]:
    inner = _unwrapped(model).model
    pixels = inputs["pixel_values"]  # (rows, images per row, tiles, channels, height, width)
    owners, position = image_owners(images)
    owners = owners.to(pixels.device)
    states = inner.vision_model(
        pixel_values=pixels[owners],
        aspect_ratio_ids=inputs["aspect_ratio_ids"][owners],
        aspect_ratio_mask=inputs["aspect_ratio_mask"][owners],
    ).last_hidden_state
    states = inner.multi_modal_projector(states)
    # As MllamaModel.forward shapes them: (rows · images · tiles, patches, hidden).
    states = states[position.to(states.device)]
    states = states.reshape(-1, states.shape[-2], inner.hidden_size)
    drop = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")
    shared = {k: v for k, v in inputs.items() if k not in drop}
    shared["cross_attention_states"] = states
    return shared


_BUILDERS: dict[str, Callable[[Any, dict[str, Any], torch.Tensor], dict[str, Any]]] = {
    **dict.fromkeys(_QWEN, _qwen_inputs),
    "mllama": _mllama_inputs,
}


def shared_vision_inputs(
    model: Any, inputs: dict[str, Any], images: torch.Tensor | None
) -> dict[str, Any]:
    """``inputs`` with the vision tensors replaced by features computed once per distinct image.

    ``images`` numbers each row's image (rows with the same number carry the same image). The
    inputs come back unchanged when there is nothing to share (no images, or no number given),
    and when the architecture is not one of those above (logged once per architecture).
    """
    if images is None or inputs.get("pixel_values") is None:
        return inputs
    model_type = _unwrapped(model).config.model_type
    builder = _BUILDERS.get(model_type)
    if builder is None:
        if model_type not in _warned:
            _warned.add(model_type)
            log.warning(
                "vision features are not shared for %s models: every sequence runs the vision "
                "tower (sharing knows %s)",
                model_type,
                ", ".join(sorted(_BUILDERS)),
            )
        return inputs
    return builder(model, inputs, images)
