"""The vLLM backend against vLLM's real API objects, on the CPU (no engine is started).

Runs in the vLLM environment (``pip install -e ".[vllm,test]"`` in its own venv); the main
suite starts it there through tests/test_vllm_backend.py and skips here, saying so.

What is real: ``vllm.EngineArgs`` / ``ModelConfig`` (our engine keywords), ``vllm.SamplingParams``
(our sampling, validated by vLLM), vLLM's own multi-modal processor for Qwen2-VL and its
tokenizer (our prompt dicts turned into the token ids the engine would see), and vLLM's
``RequestOutput`` / ``CompletionOutput`` (what ``LLM.generate`` returns). Only the GPU engine
is replaced, by a recorder that answers with those real output objects.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

vllm = pytest.importorskip(
    "vllm",
    reason="vllm is not installed here: tests/test_vllm_backend.py runs this file in "
    "the vLLM environment",
)

from vllm.config import ModelConfig  # noqa: E402
from vllm.engine.arg_utils import EngineArgs  # noqa: E402
from vllm.multimodal import MULTIMODAL_REGISTRY  # noqa: E402
from vllm.multimodal.processing.context import TimingContext  # noqa: E402
from vllm.multimodal.processing.inputs import ProcessorInputs  # noqa: E402
from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402
from vllm.renderers.registry import cached_tokenizer_from_config  # noqa: E402
from vllm.sampling_params import SamplingType  # noqa: E402

from sherlock.data.chat import render_prompt  # noqa: E402
from sherlock.data.images import fit_pixels, load_rgb  # noqa: E402
from sherlock.data.prompts import load_prompt  # noqa: E402
from sherlock.generation import (  # noqa: E402
    GenerationRequest,
    SamplingParams,
    load_backend,
    load_text_backend,
)
from sherlock.generation.resumable import ResumableBackend  # noqa: E402
from sherlock.generation.vllm_backend import (  # noqa: E402
    VLLMBackend,
    VLLMTextBackend,
    engine_arguments,
    request_sampling,
)
from sherlock.online.judge import JudgeItem, judge_prompt, llm_equivalent  # noqa: E402

LLM_GENERATE = inspect.signature(vllm.LLM.generate)  # before any test replaces vllm.LLM


class RecordingEngine:
    """Stands in for ``vllm.LLM``: records each call, answers with real vLLM output objects."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.calls: list[tuple[list, list]] = []

    def generate(self, prompts, sampling_params, use_tqdm=True):
        # the call must fit the real engine's signature
        LLM_GENERATE.bind(self, prompts, sampling_params, use_tqdm=use_tqdm)
        self.calls.append((list(prompts), list(sampling_params)))
        return [
            RequestOutput(
                request_id=str(index),
                prompt=prompt["prompt"],
                prompt_token_ids=None,
                prompt_logprobs=None,
                outputs=[
                    CompletionOutput(
                        index=0,
                        text=self.answer(prompt, params),
                        token_ids=[],
                        cumulative_logprob=None,
                        logprobs=None,
                        finish_reason="stop",
                    )
                ],
                finished=True,
            )
            for index, (prompt, params) in enumerate(zip(prompts, sampling_params, strict=True))
        ]


def engine_built_as(monkeypatch, engine: RecordingEngine) -> dict:
    """Make ``vllm.LLM(...)`` return ``engine``; the keywords it was called with land in the
    returned dict."""
    made: dict = {}

    def build(**arguments):
        made.update(arguments)
        return engine

    monkeypatch.setattr(vllm, "LLM", build)
    return made


def requests_of(records: list[dict], synthetic_dir: Path, count: int) -> list[GenerationRequest]:
    prefixes = ["", "<SUMMARY>I will look.</SUMMARY>", "<SUMMARY>"]
    return [
        GenerationRequest(
            key=record["id"],
            image=str(synthetic_dir / record["image"]),
            user_text=record["conversations"][0]["value"].replace("<image>", "").strip(),
            assistant_prefix=prefixes[index % len(prefixes)],
        )
        for index, record in enumerate(records[:count])
    ]


def backend_with(model: Path, engine: RecordingEngine, **options) -> VLLMBackend:
    return VLLMBackend(str(model), engine=engine, progress=False, **options)


def test_engine_keywords_are_vllm_engine_arguments(tiny_model_dir: Path) -> None:
    arguments = engine_arguments(
        str(tiny_model_dir),
        dtype="float32",
        trust_remote_code=False,
        seed=3,
        gpu_memory_utilization=0.8,
        max_model_len=2048,
    )
    engine_args = EngineArgs(**arguments)  # an unknown keyword would raise here
    assert engine_args.generation_config == "vllm"  # the model's sampling defaults stay off
    assert engine_args.limit_mm_per_prompt == {"image": 1}
    assert engine_args.max_model_len == 2048 and engine_args.seed == 3
    config = ModelConfig(
        model=str(tiny_model_dir),
        tokenizer=str(tiny_model_dir),
        dtype="float32",
        seed=3,
        generation_config="vllm",
        limit_mm_per_prompt={"image": 1},
    )
    assert config.architectures == ["Qwen2VLForConditionalGeneration"]
    assert config.get_diff_sampling_param() == {}
    with pytest.raises(ValueError, match="unknown dtype"):
        engine_arguments(
            "m",
            dtype="fp8",
            trust_remote_code=False,
            seed=0,
            gpu_memory_utilization=0.9,
            max_model_len=None,
        )


def test_sampling_is_exact_and_seeded_per_batch() -> None:
    sampled = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=50, seed=100)
    params = [request_sampling(vllm.SamplingParams, sampled, i, 4, [7, 9]) for i in range(10)]
    assert all(isinstance(p, vllm.SamplingParams) for p in params)
    assert [p.seed for p in params] == [100] * 4 + [101] * 4 + [102] * 2
    first = params[0]
    assert first.sampling_type == SamplingType.RANDOM_SEED
    assert (first.temperature, first.top_p, first.max_tokens) == (0.7, 0.9, 50)
    assert first.top_k in (0, -1) and first.min_p == 0.0 and first.repetition_penalty == 1.0
    assert first.stop == ["</CONCLUSION>"] and first.include_stop_str_in_output
    assert first.stop_token_ids == [7, 9] and first.skip_special_tokens
    greedy = request_sampling(vllm.SamplingParams, SamplingParams(0.0, 1.0, 50, 100), 5, 4, [7])
    assert greedy.sampling_type == SamplingType.GREEDY and greedy.seed is None


def test_prompts_reach_the_engine_as_the_tokens_transformers_trains_on(
    tiny_model_dir: Path, records: list[dict], synthetic_dir: Path
) -> None:
    engine = RecordingEngine(lambda prompt, params: "x</CONCLUSION>")
    backend = backend_with(tiny_model_dir, engine, image_max_pixels=28 * 28 * 2)
    requests = requests_of(records, synthetic_dir, 3)
    backend.generate(requests, SamplingParams(0.0, 1.0, 20, 0))
    ((prompts, _),) = engine.calls  # every request in one call
    assert len(prompts) == 3

    # vLLM's own processing of our prompt dicts: its tokenizer, then its Qwen2-VL processor.
    config = ModelConfig(
        model=str(tiny_model_dir),
        tokenizer=str(tiny_model_dir),
        dtype="float32",
        seed=0,
        limit_mm_per_prompt={"image": 1},
    )
    processor = MULTIMODAL_REGISTRY.create_processor(config)
    tokenizer = cached_tokenizer_from_config(config)
    encode = processor.info.default_tok_params.get_encode_kwargs()
    for request, prompt in zip(requests, prompts, strict=True):
        image = prompt["multi_modal_data"]["image"]
        expected_image = fit_pixels(load_rgb(request.image), 1, 28 * 28 * 2)
        assert image.size == expected_image.size and image.size != (56, 56)
        inputs = ProcessorInputs(
            tokenizer(prompt["prompt"], **encode)["input_ids"],
            processor.info.parse_mm_data(prompt["multi_modal_data"]),
        )
        vllm_ids = processor.apply(inputs, TimingContext())["prompt_token_ids"]
        text = render_prompt(backend.processor, request.user_text, request.assistant_prefix)
        hf_ids = backend.processor(text=[text], images=[expected_image])["input_ids"][0]
        assert list(vllm_ids) == list(hf_ids)
        assert prompt["prompt"].endswith(request.assistant_prefix)


def test_answers_are_cut_after_the_conclusion_and_kept_in_order(
    tiny_model_dir: Path, records: list[dict], synthetic_dir: Path
) -> None:
    def answer(prompt, params):
        return f" body {len(prompt['prompt'])}</CONCLUSION> trailing"

    engine = RecordingEngine(answer)
    backend = backend_with(tiny_model_dir, engine)
    requests = requests_of(records, synthetic_dir, 4)
    texts = backend.generate(requests, SamplingParams(0.0, 1.0, 20, 0))
    prompts, _ = engine.calls[0]
    assert texts == [f" body {len(p['prompt'])}</CONCLUSION>" for p in prompts]
    # A prefix that already concludes leaves nothing to continue.
    done = GenerationRequest("k", requests[0].image, "q", "<CONCLUSION>A</CONCLUSION>")
    assert backend.generate([done], SamplingParams(0.0, 1.0, 20, 0)) == [""]
    assert backend.generate([], SamplingParams(0.0, 1.0, 20, 0)) == []


def test_chunked_and_sharded_runs_sample_with_the_seeds_of_one_call(
    tiny_model_dir: Path, records: list[dict], synthetic_dir: Path, tmp_path: Path
) -> None:
    def seed_answer(prompt, params):
        return f"seed {params.seed}</CONCLUSION>"

    requests = requests_of(records, synthetic_dir, 8)
    sampling = SamplingParams(0.7, 1.0, 20, seed=50)
    whole = backend_with(tiny_model_dir, RecordingEngine(seed_answer), batch_size=2)
    expected = whole.generate(requests, sampling)
    assert expected == [f"seed {50 + i // 2}</CONCLUSION>" for i in range(8)]

    shard_dirs = [tmp_path / "shard0", tmp_path / "shard1"]
    for shard, folder in enumerate(shard_dirs):
        ResumableBackend(
            lambda: backend_with(tiny_model_dir, RecordingEngine(seed_answer), batch_size=2),
            folder,
            chunk_size=2,
            batch_size=2,
            identity={"test": 1},
            shard=(shard, 2),
        ).generate(requests, sampling)
    gathered = ResumableBackend(
        lambda: pytest.fail("gathering must not load the model"),
        tmp_path / "gather",
        chunk_size=2,
        batch_size=2,
        identity={"test": 1},
        saved_dirs=shard_dirs,
        require_saved=True,
    )
    assert gathered.generate(requests, sampling) == expected


def test_the_backend_is_found_by_name(tiny_model_dir: Path, monkeypatch) -> None:
    engine = RecordingEngine(lambda prompt, params: "")
    made = engine_built_as(monkeypatch, engine)
    backend = load_backend(
        "vllm",
        str(tiny_model_dir),
        batch_size=4,
        dtype="float32",
        trust_remote_code=False,
        seed=9,
        gpu_memory_utilization=0.5,
        max_model_len=None,
        image_min_pixels=None,
        image_max_pixels=None,
        progress=False,
    )
    assert isinstance(backend, VLLMBackend) and backend.engine is engine
    EngineArgs(**made)
    assert made["model"] == str(tiny_model_dir) and made["gpu_memory_utilization"] == 0.5


# -- the llm judge's text model on vLLM ------------------------------------------------------


def test_text_engine_keywords_are_vllm_engine_arguments(tiny_text_model_dir: Path) -> None:
    arguments = engine_arguments(
        str(tiny_text_model_dir),
        dtype="float32",
        trust_remote_code=False,
        seed=3,
        gpu_memory_utilization=0.8,
        max_model_len=1024,
        images_per_prompt=0,
    )
    assert "limit_mm_per_prompt" not in arguments  # a text model takes no images
    EngineArgs(**arguments)
    config = ModelConfig(
        model=str(tiny_text_model_dir),
        tokenizer=str(tiny_text_model_dir),
        dtype="float32",
        seed=3,
        generation_config="vllm",
        max_model_len=1024,
    )
    assert config.architectures == ["Qwen2ForCausalLM"] and not config.is_multimodal_model
    assert config.get_diff_sampling_param() == {}


def test_judge_prompts_reach_vllm_as_the_chat_template_tokens(tiny_text_model_dir: Path) -> None:
    replies = iter(["Yes, they agree.", "No", "yes"])
    engine = RecordingEngine(lambda prompt, params: next(replies))
    backend = VLLMTextBackend(str(tiny_text_model_dir), batch_size=2, engine=engine, progress=False)
    template = load_prompt("consistency_judge")
    items = [JudgeItem(f"Q{i}?", ("red", "red", "Red.")) for i in range(3)]
    greedy = SamplingParams(0.0, 1.0, 64, 11)
    verdicts, raw = llm_equivalent(
        items, template, lambda prompts: backend.generate_text(prompts, greedy)
    )
    assert verdicts == [True, False, True] and raw == ["Yes, they agree.", "No", "yes"]
    ((prompts, params),) = engine.calls  # every item in one engine call
    assert [set(prompt) for prompt in prompts] == [{"prompt"}] * 3  # text only

    # vLLM's own tokenizer turns our prompt text into the ids the chat template gives in HF
    config = ModelConfig(
        model=str(tiny_text_model_dir),
        tokenizer=str(tiny_text_model_dir),
        dtype="float32",
        seed=0,
        max_model_len=1024,
    )
    tokenizer = cached_tokenizer_from_config(config)
    for item, prompt in zip(items, prompts, strict=True):
        messages = [{"role": "user", "content": judge_prompt(template, item)}]
        hf_ids = backend.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert list(tokenizer(prompt["prompt"])["input_ids"]) == list(hf_ids)

    # greedy, at most 64 tokens, ended by the model's eos only: no CONCLUSION stop for a judge
    first = params[0]
    assert first.sampling_type == SamplingType.GREEDY and first.max_tokens == 64
    assert first.stop == [] and not first.include_stop_str_in_output
    assert first.stop_token_ids == [backend.tokenizer.eos_token_id]
    assert backend.generate_text([], greedy) == []


def test_sampled_judge_replies_are_seeded_per_batch(tiny_text_model_dir: Path) -> None:
    engine = RecordingEngine(lambda prompt, params: f"seed {params.seed}")
    backend = VLLMTextBackend(str(tiny_text_model_dir), batch_size=2, engine=engine, progress=False)
    texts = backend.generate_text(["a", "b", "c"], SamplingParams(0.5, 0.9, 8, 40))
    assert texts == ["seed 40", "seed 40", "seed 41"]


def test_the_text_backend_is_found_by_name(tiny_text_model_dir: Path, monkeypatch) -> None:
    engine = RecordingEngine(lambda prompt, params: "")
    made = engine_built_as(monkeypatch, engine)
    backend = load_text_backend(
        "vllm",
        str(tiny_text_model_dir),
        batch_size=4,
        dtype="bfloat16",
        trust_remote_code=False,
        seed=2,
        gpu_memory_utilization=0.4,
        max_model_len=2048,
        progress=False,
    )
    assert isinstance(backend, VLLMTextBackend) and backend.engine is engine
    EngineArgs(**made)
    assert made["gpu_memory_utilization"] == 0.4 and made["max_model_len"] == 2048
    assert made["dtype"] == "bfloat16" and "limit_mm_per_prompt" not in made


def test_the_judge_script_runs_its_judge_on_a_vllm_engine(
    tiny_text_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """workflow_scripts/select_chosen.py as the `chosen` rule calls it with generation.backend
    vllm: the engine it builds takes our settings, and its replies decide what is kept."""
    import json
    import runpy
    import sys

    import yaml

    from sherlock.data.response import extract_answer

    def candidate(name: str, answers: list[str]) -> dict:
        head = "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING>"
        turns = [f"{head}<CONCLUSION>{answer}</CONCLUSION>" for answer in answers]
        return {
            "id": name,
            "question": f"{name}?",
            "turns": turns,
            "answers": [extract_answer(turn) for turn in turns],
        }

    rows = [candidate("a", ["x", "y", "y", "y"]), candidate("b", ["x", "y", "z", "y"])]
    (tmp_path / "candidates.json").write_text(json.dumps(rows))
    engine = RecordingEngine(
        lambda prompt, params: "Yes" if "[QUESTION]:\na?" in prompt["prompt"] else "No"
    )
    made = engine_built_as(monkeypatch, engine)
    script = Path(__file__).resolve().parents[2] / "workflow_scripts" / "select_chosen.py"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            str(script),
            "--candidates",
            str(tmp_path / "candidates.json"),
            "--judge",
            "llm",
            "--judge-model",
            str(tiny_text_model_dir),
            "--backend",
            "vllm",
            "--dtype",
            "bfloat16",
            "--gpu-memory-utilization",
            "0.45",
            "--max-model-len",
            "4096",
            "--seed",
            "5",
            "--target",
            "10",
            "--min-pairs",
            "1",
            "--output",
            str(tmp_path / "chosen.json"),
            "--summary",
            str(tmp_path / "summary.yaml"),
        ],
    )
    runpy.run_path(str(script), run_name="__main__")

    EngineArgs(**made)
    assert made["model"] == str(tiny_text_model_dir) and made["seed"] == 5
    assert made["gpu_memory_utilization"] == 0.45 and made["max_model_len"] == 4096
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 2  # both items, one call
    kept = json.loads((tmp_path / "chosen.json").read_text())
    assert [row["id"] for row in kept] == ["a"]
    summary = yaml.safe_load((tmp_path / "summary.yaml").read_text())
    assert summary["judge_backend"] == "vllm" and summary["judge_replies_sample"] == ["Yes", "No"]
    assert summary["not_kept"] == {"turns 1-3 judged not equivalent": 1}


def test_sherlock_correct_runs_on_a_vllm_engine(
    tiny_model_dir: Path, synthetic_dir: Path, records: list[dict], monkeypatch, capsys
) -> None:
    """`sherlock-correct --backend vllm`: the direct answer, then each round's REFINE prompt
    carrying the previous answer, one engine call per turn."""
    import json

    from sherlock.generation.correct_cli import main

    answers = iter(["<CONCLUSION>red</CONCLUSION> more", "<CONCLUSION>blue</CONCLUSION>"])
    engine = RecordingEngine(lambda prompt, params: next(answers))
    made = engine_built_as(monkeypatch, engine)
    image = str(synthetic_dir / records[0]["image"])
    main(
        [
            "--model",
            str(tiny_model_dir),
            "--image",
            image,
            "--question",
            "Which colour?",
            "--rounds",
            "1",
            "--backend",
            "vllm",
            "--dtype",
            "float32",
            "--json",
        ]
    )
    EngineArgs(**made)
    printed = json.loads(capsys.readouterr().out)
    assert printed["turns"] == ["<CONCLUSION>red</CONCLUSION>", "<CONCLUSION>blue</CONCLUSION>"]
    assert printed["answers"] == ["red", "blue"]
    (direct, _), (refine, _) = engine.calls
    assert "Which colour?" in direct[0]["prompt"]
    assert "<CONCLUSION>red</CONCLUSION>" in refine[0]["prompt"]  # the answer to correct
    assert "multi_modal_data" in refine[0]
