"""The byte-level BPE every tiny model's tokenizer is trained with, on the task's own text.

Shared by the model families (``qwen_vl``, ``mllama``, ``tiny_judge``): each passes its special
tokens and scaffold text (what its chat template always adds) and wraps the trained vocabulary
in its own tokenizer class.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from sherlock.data.response import STAGES

REFINE_PROMPT_PATH = Path(__file__).parents[1] / "data" / "prompts" / "refine.txt"
JUDGE_PROMPT_PATH = Path(__file__).parents[1] / "data" / "prompts" / "consistency_judge.txt"

# Qwen2's pre-tokenisation regex (transformers' Qwen2Tokenizer); Llama 3's differs only in how
# it groups digits, which the tiny models do not need to imitate.
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def refine_prompt_text() -> str:
    """The published REFINE prompt (its words belong in the tokenizer's training corpus)."""
    return REFINE_PROMPT_PATH.read_text(encoding="utf-8")


def judge_prompt_text() -> str:
    """The self-consistency judge's prompt (in the judge's tokenizer corpus)."""
    return JUDGE_PROMPT_PATH.read_text(encoding="utf-8")


def corpus_from_jsonl(paths: Iterable[Path | str], extra_texts: Iterable[str] = ()) -> list[str]:
    """Every turn of LLaVA-CoT / ShareGPT JSONL records, ``<image>`` removed, plus extra texts."""
    texts: list[str] = []
    for path in paths:
        with Path(path).open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                for turn in json.loads(line).get("conversations", []):
                    texts.append(turn["value"].replace("<image>", ""))
    texts.extend(extra_texts)
    return texts


def task_scaffold() -> list[str]:
    """Text every family's prompts carry: the stage tags and the REFINE prompt."""
    return ["".join(f"<{tag}></{tag}>" for tag in STAGES), refine_prompt_text()]


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """ "<" kept out of every merge, then Qwen2's regex, then bytes.

    With "<" a token of its own, a response cut at a stage boundary ("…</SUMMARY>" +
    "<CAPTION>…") tokenizes as prefix tokens + suffix tokens, exactly as the whole response does
    (the regex makes "><" one pre-token; a "><" merge would straddle the cut).
    """
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("<", behavior="isolated"),
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_bpe(
    corpus: Iterable[str], vocab_size: int, special_tokens: Sequence[str], scaffold: Iterable[str]
) -> Tokenizer:
    """A byte-level BPE (full 256-byte alphabet, so any text round-trips) trained on ``corpus``
    and ``scaffold``; the special tokens take the first ids and never take part in merges."""
    backend = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def texts() -> Iterator[str]:
        yield from corpus
        yield from scaffold

    backend.train_from_iterator(texts(), trainer=trainer)
    return backend


def vocab_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The trained BPE's vocabulary and merges, as tokenizer classes take them."""
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges
