"""The one place that renders prompts for generation.

Convention: a user turn is the image followed by the text. In ShareGPT records the human value is
``"<image>" + text``; for generation the same turn is rendered by the model's own chat template
with content ``[image, text]``, so the tokens match what LLaMA-Factory trained on (checked in
tests/test_template_equality.py for the tiny model). Nothing here is specific to one model
family: any processor with a chat template works (Qwen2-VL / 2.5-VL, Llama-3.2-Vision, ...).
"""

from __future__ import annotations

from typing import Any

IMAGE_PLACEHOLDER = "<image>"


def user_content(user_text: str) -> list[dict[str, str]]:
    """The structured content of a user turn: the image, then the text."""
    return [{"type": "image"}, {"type": "text", "text": user_text}]


def render_prompt(processor: Any, user_text: str, assistant_prefix: str = "") -> str:
    """The prompt text for one image + ``user_text``, opened for the assistant to continue.

    ``assistant_prefix`` (possibly empty) is pre-filled at the start of the assistant turn, so
    the model continues it. The processor's call expands the image placeholder to the image's
    tokens.
    """
    if processor.chat_template is None:
        raise ValueError(f"{type(processor).__name__} has no chat template to render prompts with")
    messages = [{"role": "user", "content": user_content(user_text)}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return prompt + assistant_prefix


def encode_prompts(processor: Any, prompts: list[str], images: list[Any], **kwargs: Any) -> Any:
    """The processor's inputs for rendered prompts, one image each, tokenized exactly once.

    A template that writes the BOS itself (Llama 3) must not get a second one from the
    tokenizer's post-processor, so special tokens are added only when the prompts lack it. Images
    go one list per prompt, the form every processor reads as "this prompt's images" (Mllama
    reads a flat list as all images of one prompt).
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    bos = tokenizer.bos_token
    add_special = not (bos and all(p.startswith(bos) for p in prompts))
    return processor(
        text=prompts,
        images=[[image] for image in images],
        add_special_tokens=add_special,
        **kwargs,
    )


def user_text_from_sharegpt(value: str) -> str:
    """The text of a ShareGPT human value ``"<image>" + text`` (ValueError otherwise)."""
    if not value.startswith(IMAGE_PLACEHOLDER) or value.count(IMAGE_PLACEHOLDER) != 1:
        raise ValueError(f"expected one leading {IMAGE_PLACEHOLDER!r} in the human turn: {value!r}")
    return value[len(IMAGE_PLACEHOLDER) :]
