"""The work of every stage of a run, read from its config: how many records or requests, how
many passes, and how many tokens each carries (docs/method.md §3–§9).

Token counts of the data are assumptions, each printed beside the price: the question and the
answer lengths (``Tokens``; LLaVA-CoT-style four-stage answers by default), the REFINE prompt's
own text (its file's characters / 4), the chat template's tokens, and an image's tokens (the
family's rule at the run's largest image, ``sft.common.image_max_pixels``). Pure Python.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

from sherlock.data.prompts import REFINE_WORDINGS, refine_choice
from sherlock.gpucheck.architectures import ModelShape
from sherlock.gpucheck.flops import Training, image_text_tokens
from sherlock.node import apply_layout, resolve_batch

PROMPTS = Path(__file__).parents[1] / "data" / "prompts"
LLAMAFACTORY_MAX_PIXELS = 768 * 768  # LLaMA-Factory's default image_max_pixels
CHARS_PER_TOKEN = 4  # English text in a BPE of ~100k tokens


@dataclass(frozen=True)
class Tokens:
    """Assumed token counts of the data (``--question-tokens`` and friends override them)."""

    question: int = 40
    answer: int = 350
    template: int = 20  # chat template: system turn, role headers, end of turn
    refine: int = 0  # the REFINE prompt's own text; 0: measured from its file
    prefix_fraction: float = 0.25  # share of an answer kept before a continuation
    acceptance: float = 0.5  # Stage III: share of pool items judged self-consistent
    conclusion: int = 20  # a CONCLUSION's text (what the llm judge compares)


# The synthetic records' mean lengths (200 records of the embedded default, characters / 4).
SYNTHETIC_TOKENS = {"question": 11, "answer": 97}
SAMPLED_RECORDS = 500


def source_tokens(config: dict[str, Any], tokens: Tokens = Tokens()) -> tuple[Tokens, str]:
    """``tokens`` with the question and answer lengths of the run's own data where it can be
    read cheaply (the synthetic set's, or the first records of the source file), and in words
    where they came from."""
    source = config["source"]
    if source["format"] == "synthetic":
        return replace(tokens, **SYNTHETIC_TOKENS), "the synthetic records' mean (chars / 4)"
    path = Path(source.get("path") or "")
    questions, answers = [], []
    try:
        with path.open(encoding="utf-8") as handle:
            if source["format"] == "sharegpt":
                rows = json.load(handle)[:SAMPLED_RECORDS]
            else:
                lines = islice(handle, SAMPLED_RECORDS)
                rows = [json.loads(line) for line in lines if line.strip()]
        for row in rows:
            turns = row.get("conversations") or []
            humans = [t["value"] for t in turns if t.get("from") == "human"]
            gpts = [t["value"] for t in turns if t.get("from") == "gpt"]
            if humans and gpts:
                questions.append(len(humans[-1].replace("<image>", "")))
                answers.append(len(gpts[-1]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if not answers:
        return tokens, "assumed (LLaVA-CoT-style answers; the source file was not read)"
    return (
        replace(
            tokens,
            question=sum(questions) // len(questions) // CHARS_PER_TOKEN,
            answer=sum(answers) // len(answers) // CHARS_PER_TOKEN,
        ),
        f"the mean of {len(answers)} records of {path} (chars / 4)",
    )


def prompt_tokens(name: str, override: str | None = None) -> int:
    """Tokens of a prompt file's own text (characters / 4); ``override``: a file, or for
    ``refine`` the name of a shipped wording."""
    if name == "refine" and override in REFINE_WORDINGS:
        override = str(PROMPTS / REFINE_WORDINGS[override])
    path = Path(override) if override else PROMPTS / f"{name}.txt"
    try:
        return len(path.read_text(encoding="utf-8")) // CHARS_PER_TOKEN
    except OSError:
        return len((PROMPTS / f"{name}.txt").read_text(encoding="utf-8")) // CHARS_PER_TOKEN


def image_pixels(config: dict[str, Any]) -> tuple[int, int]:
    """(min, max) pixels of every stage's images (``sft.common``; LLaMA-Factory's defaults)."""
    common = config["sft"]["common"]
    return int(common.get("image_min_pixels") or 32 * 32), int(
        common.get("image_max_pixels") or LLAMAFACTORY_MAX_PIXELS
    )


def training_of(section: dict[str, Any], stage_kind: str) -> Training:
    """The freeze keys and fine-tuning type of a stage's hyper-parameters. Stage I (LLaMA-
    Factory) freezes the vision tower and projector unless told otherwise; ``finetuning_type:
    lora`` trains adapters of ``lora_rank`` on ``lora_target``."""
    default = stage_kind == "sft"  # LLaMA-Factory's defaults; our trainer's are in the config

    def flag(key: str, fallback: bool) -> bool:
        value = section.get(key)
        return fallback if value is None else bool(value)

    lora = section.get("finetuning_type", "full") == "lora"
    return Training(
        freeze_vision=flag("freeze_vision_tower", default),
        freeze_projector=flag("freeze_multi_modal_projector", default),
        freeze_language=flag("freeze_language_model", False),
        lora_rank=int(section.get("lora_rank") or 8) if lora else None,
        lora_target=section.get("lora_target") or "all",
    )


@dataclass(frozen=True)
class Zero:
    """A DeepSpeed config's ZeRO stage and offloads (stage 0: no DeepSpeed)."""

    stage: int = 0
    offload_optimizer: bool = False
    offload_parameters: bool = False


def zero_of(deepspeed: str | None, root: Path = Path(__file__).parents[2]) -> Zero:
    """The ZeRO settings of a DeepSpeed JSON (a relative path read from the workflow folder)."""
    if not deepspeed:
        return Zero()
    path = Path(deepspeed) if Path(deepspeed).is_absolute() else root / deepspeed
    try:
        zero = json.loads(path.read_text(encoding="utf-8")).get("zero_optimization", {})
    except (OSError, ValueError):
        return Zero()

    def offloaded(key: str) -> bool:
        return (zero.get(key) or {}).get("device", "none") not in ("none", None)

    return Zero(
        int(zero.get("stage", 0)), offloaded("offload_optimizer"), offloaded("offload_param")
    )


@dataclass(frozen=True)
class Sequence:
    """A training sequence of a record: its tokens, its target tokens, how many of it a record
    has (a fraction for data mixing kinds of records)."""

    tokens: int
    targets: int
    count: float = 1.0


@dataclass(frozen=True)
class Request:
    """A generation request of an item: prompt tokens, new tokens, how many of it per item."""

    prompt: int
    new: int
    count: float = 1.0


@dataclass
class Stage:
    """One step of the pipeline that runs a model."""

    name: str
    kind: str  # sft, sherlock (training), generate, judge (generation)
    items: int  # records trained on, or items generated for
    item: str  # what an item is, in words
    epochs: int = 1
    sequences: list[Sequence] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    training: Training | None = None
    share_vision: bool = True
    precompute_reference: bool = True
    batch: int = 1  # generation: requests decoded together; training: per-device batch
    gpus: int = 1  # GPUs the stage's jobs take together
    zero: Zero = Zero()  # training: how DeepSpeed shards and offloads its state
    note: str = ""


def _merged(config: dict, section: str, run: str, processes: int = 1) -> dict:
    """A run's keys, its global batch resolved for ``processes`` as the workflow resolves it."""
    keys = {**config[section]["common"], **(config[section][run] or {})}
    return resolve_batch(keys, processes, f"{section}.{run}")


def _count_items(path: Path, max_bytes: int | None) -> int | None:
    """Records of a JSONL or TSV benchmark file (lines; a TSV's header left out), or None."""
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            return None
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
    except OSError:
        return None
    return lines - 1 if path.suffix == ".tsv" else lines


def evaluation_items(config: dict[str, Any], max_bytes: int | None) -> dict[str, int | None]:
    """Items per benchmark (None: unknown, its file not read)."""
    evaluation = config["evaluation"]
    cap = evaluation.get("max_items")
    counts: dict[str, int | None] = {}
    if config["source"]["format"] == "synthetic":
        counts["heldout"] = config["synthetic"]["n_test"]
    root = Path(evaluation.get("data_dir") or ".")
    for name, spec in (evaluation.get("benchmarks") or {}).items():
        path = Path(spec["path"]) if isinstance(spec, dict) else Path(str(spec))
        counts[name] = _count_items(path if path.is_absolute() else root / path, max_bytes)
    return {name: (min(n, cap) if n is not None and cap else n) for name, n in counts.items()}


def stages(
    config: dict[str, Any],
    shape: ModelShape,
    tokens: Tokens = Tokens(),
    count_files_up_to: int | None = 20_000_000,
) -> list[Stage]:
    """Every stage that runs a model, in pipeline order, with its work."""
    config = copy.deepcopy(config)
    node = apply_layout(config)  # node.gpus → GPU tags and shards, as the workflow resolves them
    _, max_pixels = image_pixels(config)
    image = image_text_tokens(shape, max_pixels)
    wording = refine_choice(config["prompts"].get("refine"), "preference")
    refine = tokens.refine or prompt_tokens("refine", wording)
    q, a = tokens.question, tokens.answer
    prompt = tokens.template + image + q  # a question's prompt, image included
    refine_prompt = prompt + refine + a  # REFINE(x, y): the instruction and a previous answer
    gen = config["generation"]
    new = min(a, gen["max_new_tokens"])
    prefix = int(a * tokens.prefix_fraction)
    resources = config["resources"]
    train_gpus = resources["train"]["gpu"] * resources["train"].get("nodes", 1) or 1
    gen_gpus = max(resources["generate"]["gpu"], 1) * gen.get("shards", 1)
    gen_batch = gen["batch_size"] if gen["backend"] != "vllm" else 256
    splits = config["splits"]
    out: list[Stage] = []

    def sft(name: str, run: str, items: int, sequences: list[Sequence], item: str) -> None:
        hp = _merged(config, "sft", run, node.processes)
        out.append(
            Stage(
                name,
                "sft",
                items,
                item,
                int(hp.get("num_train_epochs") or 1),
                sequences=sequences,
                training=training_of(hp, "sft"),
                batch=int(hp.get("per_device_train_batch_size") or 1),
                gpus=train_gpus,
                zero=zero_of(hp.get("deepspeed")),
            )
        )

    def sherlock(name: str, run: str, items: int, distinct_refine: int, item: str) -> None:
        hp = _merged(config, "preference", run, node.processes)
        cutoff = hp.get("cutoff_len") or 10**9
        direct = Sequence(min(prompt + a, cutoff), a, 2)
        refined = Sequence(min(refine_prompt + a, cutoff), a - prefix, distinct_refine)
        out.append(
            Stage(
                name,
                "sherlock",
                items,
                item,
                int(hp.get("num_train_epochs") or 1),
                sequences=[direct, refined],
                training=training_of(hp, "preference"),
                share_vision=bool(hp.get("share_vision_features", True)),
                precompute_reference=bool(hp.get("precompute_ref_log_probs", True)),
                batch=int(hp.get("per_device_train_batch_size") or 1),
                gpus=train_gpus,
                zero=zero_of(hp.get("deepspeed")),
                note=f"{2 + distinct_refine} distinct of the 10 sequences",
            )
        )

    def generate(name: str, items: int, requests: list[Request], item: str) -> None:
        out.append(
            Stage(name, "generate", items, item, requests=requests, batch=gen_batch, gpus=gen_gpus)
        )

    cutoff_sft = _merged(config, "sft", "r0").get("cutoff_len") or 10**9
    sft(
        "Stage I   R0 (SFT on D_A)",
        "r0",
        splits["d_a"],
        [Sequence(min(prompt + a, cutoff_sft), a)],
        "record",
    )
    generate("Stage I   R0 answers D_B", splits["d_b"], [Request(prompt, new)], "question")
    sft(
        "Stage I   Sherlock-SFT",
        "sherlock_sft",
        2 * splits["d_b"],
        [
            Sequence(min(prompt + a, cutoff_sft), a, 0.5),
            Sequence(min(refine_prompt + a, cutoff_sft), a, 0.5),
        ],
        "record",
    )
    source = splits["d_a"] if config["offline"]["source_split"] == "d_a" else splits["d_b"]
    generate(
        "Stage II  offline pairs (continuations)",
        source,
        [Request(prompt + prefix, max(new - prefix, 1))],
        "record",
    )
    # Offline pairs have p_w = p_l: A1 = A2 and B1 = B2, 2 + 4 distinct sequences.
    sherlock("Stage II  Offline (Sherlock)", "offline", source, 4, "pair")
    online = config["online"]
    kept = min(online["target_pairs"], int(splits["pool"] * tokens.acceptance))
    judge = online["judge"]
    for k in range(1, online["iterations"] + 1):
        generate(
            f"Stage III iter{k} candidates (y0 + 3 corrections)",
            splits["pool"],
            [Request(prompt, new), Request(refine_prompt, new, 3)],
            "pool item",
        )
        if judge["kind"] == "llm":
            judge_prompt = prompt_tokens("consistency_judge") + q + 3 * tokens.conclusion
            out.append(
                Stage(
                    f"Stage III iter{k} llm judge",
                    "judge",
                    splits["pool"],
                    "pool item",
                    requests=[Request(judge_prompt, judge["max_new_tokens"])],
                    batch=judge["batch_size"],
                    gpus=gen_gpus,
                )
            )
        generate(
            f"Stage III iter{k} rejected (continuations)",
            kept,
            [Request(prompt + prefix, max(new - prefix, 1))],
            "kept pair",
        )
        sherlock(f"Stage III iter{k} (Sherlock)", "online", kept, 8, "pair")
    evaluation = config["evaluation"]
    checkpoints = evaluation.get("checkpoints") or (
        ["base", "r0", "sft", "offline"] + [f"iter{k}" for k in range(1, online["iterations"] + 1)]
    )
    for name, count in evaluation_items(config, count_files_up_to).items():
        stage_requests = [Request(prompt, new), Request(refine_prompt, new, evaluation["rounds"])]
        if count is None:
            out.append(
                Stage(
                    f"Evaluation {name}",
                    "generate",
                    0,
                    "question",
                    requests=stage_requests,
                    batch=gen_batch,
                    gpus=gen_gpus,
                    note="not priced: its file was not read (item count unknown)",
                )
            )
        else:
            generate(
                f"Evaluation {name} ({len(checkpoints)} checkpoints)",
                count * len(checkpoints),
                stage_requests,
                "question",
            )
    return out
