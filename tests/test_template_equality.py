"""Generation prompts must be token-for-token what LLaMA-Factory 0.9.5 trains on.

LLaMA-Factory renders the ``qwen2_vl`` template with its own code (string slots, each message
tokenized on its own, the image expanded by its mm plugin); ``sherlock.data.chat.render_prompt``
uses the model's Jinja chat template and the Qwen2-VL processor. Both paths run here on the tiny
model and must give identical ids, for the prompt and for the response LLaMA-Factory trains on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
from llamafactory.data.template import get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.hparams import DataArguments, ModelArguments
from llamafactory.model import load_tokenizer
from PIL import Image

from sherlock.data.chat import render_prompt, user_text_from_sharegpt
from sherlock.data.response import stage_start
from sherlock.embedded.tiny_model import refine_prompt_text


@pytest.fixture(scope="module")
def lf(tiny_model_dir: Path) -> dict:
    """LLaMA-Factory's tokenizer, processor and template, loaded as its trainer loads them."""
    data_args = DataArguments(template="qwen2_vl", cutoff_len=4096)
    loaded = load_tokenizer(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    template = get_template_and_fix_tokenizer(loaded["tokenizer"], data_args)
    return {**loaded, "template": template, "data_args": data_args}


def _cases(records: list[dict]) -> list[tuple[str, str, str]]:
    """(image, human value, response) triples: plain questions and one REFINE prompt."""
    cases = [
        (r["image"], r["conversations"][0]["value"], r["conversations"][1]["value"])
        for r in records[:4]
    ]
    image, question, answer = cases[0]
    refine = refine_prompt_text().replace("{Question}", question.removeprefix("<image>\n"))
    refine = refine.replace("{Example_Response}", cases[1][2])
    cases.append((image, "<image>" + refine, answer))
    return cases


def _lf_encode(lf: dict, human: str, response: str, image: Image.Image) -> tuple[list, list]:
    messages = [{"role": "user", "content": human}, {"role": "assistant", "content": response}]
    template = lf["template"]
    messages = template.mm_plugin.process_messages(messages, [image], [], [], lf["processor"])
    return template.encode_oneturn(lf["tokenizer"], messages)


def _ours(processor, user_text: str, image: Image.Image, prefix: str = "") -> list[int]:
    text = render_prompt(processor, user_text, prefix)
    return processor(text=[text], images=[image]).input_ids[0]


def test_prompt_and_response_ids_match_llamafactory(
    lf: dict, tiny_model_dir: Path, synthetic_dir: Path, records: list[dict]
) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tokenizer = processor.tokenizer
    for image_path, human, response in _cases(records):
        with Image.open(synthetic_dir / image_path) as opened:
            image = opened.convert("RGB")
        prompt_ids, response_ids = _lf_encode(lf, human, response, image)
        ours = _ours(processor, user_text_from_sharegpt(human), image)
        assert list(ours) == prompt_ids, tokenizer.decode(prompt_ids)
        # LLaMA-Factory trains on the response followed by the template's "<|im_end|>\n".
        expected = tokenizer(response + "<|im_end|>\n", add_special_tokens=False).input_ids
        assert response_ids == expected
        assert tokenizer.decode(response_ids) == response + "<|im_end|>\n"


def test_prefilled_prefix_continues_the_trained_tokens(
    lf: dict, tiny_model_dir: Path, synthetic_dir: Path, records: list[dict]
) -> None:
    """A prompt with a pre-filled assistant prefix is LF's prompt followed by the response's
    own first tokens, when the prefix ends at a stage boundary (where truncations fall)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    for image_path, human, response in _cases(records):
        with Image.open(synthetic_dir / image_path) as opened:
            image = opened.convert("RGB")
        prompt_ids, response_ids = _lf_encode(lf, human, response, image)
        for tag in ("CAPTION", "REASONING", "CONCLUSION"):
            prefix = response[: stage_start(response, tag)]
            ours = list(_ours(processor, user_text_from_sharegpt(human), image, prefix))
            assert ours[: len(prompt_ids)] == prompt_ids
            assert ours[len(prompt_ids) :] == response_ids[: len(ours) - len(prompt_ids)]


def test_supervised_example_is_prompt_then_response(
    lf: dict, tiny_model_dir: Path, synthetic_dir: Path, records: list[dict]
) -> None:
    """The whole SFT example LLaMA-Factory builds: our prompt ids, then the labelled response."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sft = SupervisedDatasetProcessor(
        template=lf["template"],
        tokenizer=lf["tokenizer"],
        processor=lf["processor"],
        data_args=lf["data_args"],
    )
    image_path, human, response = _cases(records)[1]
    with Image.open(synthetic_dir / image_path) as opened:
        image = opened.convert("RGB")
    input_ids, labels = sft._encode_data_example(
        prompt=[{"role": "user", "content": human}],
        response=[{"role": "assistant", "content": response}],
        system="",
        tools="",
        images=[image],
        videos=[],
        audios=[],
    )
    ours = list(_ours(processor, user_text_from_sharegpt(human), image))
    tail = processor.tokenizer(response + "<|im_end|>\n", add_special_tokens=False).input_ids
    assert input_ids == ours + tail
    assert labels == [IGNORE_INDEX] * len(ours) + tail
