"""One token sequence per conversation, whoever encodes it, for every tiny architecture.

Three encoders meet the same (image, question, response): LLaMA-Factory 0.9.5 (its template and
multimodal plugin, as Stage I trains), our preference encoding (``encode_sequences``, as the
Sherlock trainer trains) and the transformers generation backend (as every generating step
prompts). For Qwen2-VL, Qwen2.5-VL and Llama-3.2-Vision (Mllama) the ids must be equal, with
exactly one BOS where the family has one, the image tokens where the model expects them, and
the target closed by the family's end-of-turn token.
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
from transformers import AutoProcessor

from sherlock.data.chat import render_prompt, user_text_from_sharegpt
from sherlock.data.response import stage_start
from sherlock.embedded.architectures import ARCHITECTURES, TEMPLATES
from sherlock.embedded.tokenizer import refine_prompt_text
from sherlock.generation.base import GenerationRequest
from sherlock.generation.hf import TransformersBackend
from sherlock.preference.encoding import SequenceSpec, encode_sequences

# What each family writes around a turn: the image token(s), and the end of an assistant turn.
FAMILY = {
    "qwen2_vl": {
        "image": "<|image_pad|>",
        "images": 4,
        "before_image": "<|im_start|>user\n<|vision_start|>",
        "closing": "<|im_end|>\n",
        "bos": None,
    },
    "mllama": {
        "image": "<|image|>",
        "images": 1,
        "before_image": "<|start_header_id|>user<|end_header_id|>\n\n",
        "closing": "<|eot_id|>",
        "bos": "<|begin_of_text|>",
    },
}
FAMILY["qwen2_5_vl"] = FAMILY["qwen2_vl"]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request: pytest.FixtureRequest, tiny_vlm) -> dict:
    """One architecture's model folder, our processor and LLaMA-Factory's loaded objects."""
    name = request.param
    folder = tiny_vlm(name)
    data_args = DataArguments(template=TEMPLATES[name], cutoff_len=4096)
    loaded = load_tokenizer(ModelArguments(model_name_or_path=str(folder)))
    template = get_template_and_fix_tokenizer(loaded["tokenizer"], data_args)
    return {
        "name": name,
        "folder": folder,
        "processor": AutoProcessor.from_pretrained(folder),
        "lf": {**loaded, "template": template, "data_args": data_args},
        **FAMILY[name],
    }


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


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        return opened.convert("RGB")


def _lf_encode(lf: dict, human: str, response: str, image: Image.Image) -> tuple[list, list]:
    messages = [{"role": "user", "content": human}, {"role": "assistant", "content": response}]
    template = lf["template"]
    messages = template.mm_plugin.process_messages(messages, [image], [], [], lf["processor"])
    return template.encode_oneturn(lf["tokenizer"], messages)


def _generation_ids(backend: TransformersBackend, image: Path, user_text: str, prefix: str = ""):
    inputs = backend._encode([GenerationRequest("k", str(image), user_text, prefix)])
    return inputs["input_ids"][0].tolist()


def test_three_encoders_give_one_sequence(
    arch: dict, synthetic_dir: Path, records: list[dict]
) -> None:
    processor = arch["processor"]
    tokenizer = processor.tokenizer
    backend = TransformersBackend(
        str(arch["folder"]), device="cpu", dtype="float32", progress=False
    )
    closing = tokenizer(arch["closing"], add_special_tokens=False).input_ids
    image_id = tokenizer.convert_tokens_to_ids(arch["image"])
    for image_path, human, response in _cases(records):
        image = _rgb(synthetic_dir / image_path)
        user_text = user_text_from_sharegpt(human)
        lf_prompt, lf_response = _lf_encode(arch["lf"], human, response, image)
        # Stage I trains on the response closed by the family's end of turn.
        assert lf_response == tokenizer(response, add_special_tokens=False).input_ids + closing
        # Generation feeds exactly Stage I's prompt.
        assert _generation_ids(backend, synthetic_dir / image_path, user_text) == lf_prompt
        # The preference encoding builds Stage I's prompt + response, labelling the response.
        spec = SequenceSpec(user_text, "", response)
        (ours,) = encode_sequences(processor, image, [spec])
        assert ours["input_ids"].tolist() == lf_prompt + lf_response
        labels = ours["labels"].tolist()
        assert labels == [IGNORE_INDEX] * len(lf_prompt) + lf_response
        # One BOS, first, where the family has one; none otherwise.
        ids = ours["input_ids"].tolist()
        if arch["bos"]:
            bos = tokenizer.convert_tokens_to_ids(arch["bos"])
            assert ids[0] == bos and ids.count(bos) == 1
        else:
            assert tokenizer.bos_token_id is None or tokenizer.bos_token_id not in ids
        # The image tokens, all of them, inside the user turn before the question's text.
        positions = [i for i, t in enumerate(ids) if t == image_id]
        assert len(positions) == arch["images"]
        assert positions == list(range(positions[0], positions[0] + arch["images"]))
        assert tokenizer.decode(ids[: positions[0]]).endswith(arch["before_image"])


def test_prefilled_prefix_continues_the_trained_tokens(
    arch: dict, synthetic_dir: Path, records: list[dict]
) -> None:
    """A prompt with a pre-filled assistant prefix is LF's prompt followed by the response's
    own first tokens, when the prefix ends at a stage boundary (where truncations fall); the
    preference encoding and generation agree on it."""
    processor = arch["processor"]
    backend = TransformersBackend(
        str(arch["folder"]), device="cpu", dtype="float32", progress=False
    )
    for image_path, human, response in _cases(records):
        image = _rgb(synthetic_dir / image_path)
        lf_prompt, lf_response = _lf_encode(arch["lf"], human, response, image)
        user_text = user_text_from_sharegpt(human)
        for tag in ("CAPTION", "REASONING", "CONCLUSION"):
            cut = stage_start(response, tag)
            prefix, suffix = response[:cut], response[cut:]
            generated = _generation_ids(backend, synthetic_dir / image_path, user_text, prefix)
            assert generated[: len(lf_prompt)] == lf_prompt
            assert generated[len(lf_prompt) :] == lf_response[: len(generated) - len(lf_prompt)]
            (ours,) = encode_sequences(processor, image, [SequenceSpec(user_text, prefix, suffix)])
            assert ours["input_ids"].tolist() == lf_prompt + lf_response
            n_context = len(generated)
            assert ours["labels"].tolist()[:n_context] == [IGNORE_INDEX] * n_context


def test_supervised_example_is_prompt_then_response(
    arch: dict, synthetic_dir: Path, records: list[dict]
) -> None:
    """The whole SFT example LLaMA-Factory builds: our prompt ids, then the labelled response."""
    processor = arch["processor"]
    lf = arch["lf"]
    sft = SupervisedDatasetProcessor(
        template=lf["template"],
        tokenizer=lf["tokenizer"],
        processor=lf["processor"],
        data_args=lf["data_args"],
    )
    image_path, human, response = _cases(records)[1]
    image = _rgb(synthetic_dir / image_path)
    input_ids, labels = sft._encode_data_example(
        prompt=[{"role": "user", "content": human}],
        response=[{"role": "assistant", "content": response}],
        system="",
        tools="",
        images=[image],
        videos=[],
        audios=[],
    )
    text = render_prompt(processor, user_text_from_sharegpt(human))
    ours = processor(text=[text], images=[[image]], add_special_tokens=False).input_ids[0]
    tail = processor.tokenizer(response + arch["closing"], add_special_tokens=False).input_ids
    assert input_ids == list(ours) + tail
    assert labels == [IGNORE_INDEX] * len(ours) + tail
