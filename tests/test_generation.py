"""Generation backends: the interface, the </CONCLUSION> cut, batched transformers generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from sherlock.data.chat import user_text_from_sharegpt
from sherlock.generation import (
    GenerationRequest,
    SamplingParams,
    cut_continuation,
    load_backend,
)
from sherlock.generation.hf import TransformersBackend

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=12, seed=0)
SAMPLED = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=12, seed=5)


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> TransformersBackend:
    backend = load_backend(
        "transformers", str(tiny_model_dir), batch_size=4, device="cpu", dtype="float32"
    )
    assert isinstance(backend, TransformersBackend)
    backend.progress = False
    return backend


@pytest.fixture(scope="module")
def requests(synthetic_dir: Path, records: list[dict]) -> list[GenerationRequest]:
    """Prompts of different lengths, with and without a pre-filled assistant prefix."""
    out = []
    for i, record in enumerate(records[:6]):
        question = user_text_from_sharegpt(record["conversations"][0]["value"])
        response = record["conversations"][1]["value"]
        prefix = response[: response.index("<CAPTION>")] if i % 2 else ""
        user_text = question if i % 3 else question + " Explain your answer in detail, please."
        image = str(synthetic_dir / record["image"])
        out.append(GenerationRequest(record["id"], image, user_text, prefix))
    return out


def test_cut_continuation() -> None:
    assert cut_continuation("", "<CONCLUSION>a</CONCLUSION> junk") == "<CONCLUSION>a</CONCLUSION>"
    assert cut_continuation("<SUMMARY>s</SUMMARY>", "<CAPTION>c") == "<CAPTION>c"
    # The first </CONCLUSION> of prefix + continuation counts, even one split across both.
    assert cut_continuation("<CONCLUSION>a</CONCL", "USION>b</CONCLUSION>") == "USION>"
    assert cut_continuation("x</CONCLUSION>", "more") == ""
    assert cut_continuation("", "no conclusion at all") == "no conclusion at all"


def test_sampling_params_are_checked() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1, top_p=1.0, max_new_tokens=4, seed=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(temperature=1, top_p=0.0, max_new_tokens=4, seed=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(temperature=1, top_p=1.0, max_new_tokens=0, seed=0)


def test_unknown_backend_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown generation backend 'vllm2'.*transformers"):
        load_backend("vllm2", str(tiny_model_dir))


def test_batched_generation_returns_strings(
    backend: TransformersBackend, requests: list[GenerationRequest]
) -> None:
    outputs = backend.generate(requests, GREEDY)
    assert len(outputs) == len(requests)
    assert all(isinstance(text, str) for text in outputs)
    assert any(outputs)
    assert backend.generate([], GREEDY) == []


def test_left_padding(backend: TransformersBackend, requests: list[GenerationRequest]) -> None:
    inputs = backend._encode(requests[:4])
    mask = inputs["attention_mask"]
    assert len(set(mask.sum(dim=1).tolist())) > 1, "requests should differ in length"
    assert bool(mask[:, -1].all()), "every row must end with a real token (left padding)"
    assert not bool(mask[:, 0].all())
    # Under greedy decoding a request's output does not depend on its batch-mates.
    batched = backend.generate(requests, GREEDY)
    alone = [backend.generate([request], GREEDY)[0] for request in requests]
    assert batched == alone


def test_same_seed_same_outputs(
    backend: TransformersBackend, requests: list[GenerationRequest]
) -> None:
    first = backend.generate(requests, SAMPLED)
    assert backend.generate(requests, SAMPLED) == first
    other_seed = SamplingParams(**{**SAMPLED.__dict__, "seed": SAMPLED.seed + 100})
    assert backend.generate(requests, other_seed) != first


def test_outputs_are_cut_after_conclusion(
    backend: TransformersBackend,
    requests: list[GenerationRequest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backend cuts decoded text after the first </CONCLUSION> of prefix + continuation."""
    decoded = {
        0: "<SUMMARY>s</SUMMARY><CONCLUSION>a</CONCLUSION>\n<SUMMARY>again",
        1: "<CAPTION>c</CAPTION><CONCLUSION>b</CONCLUSION></CONCLUSION>",
        2: "no conclusion",
    }

    def fake_decode(ids, **kwargs):  # one string per row of the batch
        return [decoded[i % 3] for i in range(len(ids))]

    monkeypatch.setattr(backend.tokenizer, "batch_decode", fake_decode)
    outputs = backend.generate(requests[:3], GREEDY)
    assert outputs == [
        "<SUMMARY>s</SUMMARY><CONCLUSION>a</CONCLUSION>",
        "<CAPTION>c</CAPTION><CONCLUSION>b</CONCLUSION>",
        "no conclusion",
    ]
    assert backend._sampling_kwargs(GREEDY)["stop_strings"] == ["</CONCLUSION>"]
    # generation.sherlock_sft.stop_at_conclusion false: R0's raw answers, neither stopped nor cut
    raw = SamplingParams(**{**GREEDY.__dict__, "stop_at_conclusion": False})
    assert "stop_strings" not in backend._sampling_kwargs(raw)
    assert backend.generate(requests[:3], raw) == [decoded[0], decoded[1], decoded[2]]


def test_generation_arguments_raw_answers_and_native_images() -> None:
    import argparse

    from sherlock.generation.job import (
        add_generation_arguments,
        backend_options,
        sampling_from_args,
    )

    parser = argparse.ArgumentParser()
    add_generation_arguments(parser)
    common = ["--model", "m", "--batch-size", "2", "--max-new-tokens", "8"]
    common += ["--temperature", "0.7", "--top-p", "1", "--seed", "3"]
    common += ["--image-min-pixels", "1024", "--image-max-pixels", "589824"]
    args = parser.parse_args(common)
    assert sampling_from_args(args).stop_at_conclusion is True
    options = backend_options(args)
    assert (options["image_min_pixels"], options["image_max_pixels"]) == (1024, 589824)
    args = parser.parse_args([*common, "--no-conclusion-stop", "--native-images"])
    assert sampling_from_args(args).stop_at_conclusion is False
    options = backend_options(args)
    assert options["image_min_pixels"] is options["image_max_pixels"] is None  # as stored
    assert args.image_max_pixels == 589824  # still the training's limit (the pair steps' fit)
