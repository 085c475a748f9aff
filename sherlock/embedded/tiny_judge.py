"""A tiny text chat model trained on the spot to be the self-consistency judge.

Stage III's ``llm`` judge reads the published consistency prompt and answers Yes or No. The paper
preset judges with a 7B text model; the tiny presets walk the same path with this one: a random
Qwen2 causal LM (the reference judge's family), a tokenizer trained on the task's text and the
judge prompt, then a few hundred optimizer steps on judge prompts built from the synthetic
answers (three equal answers → "Yes", one differing → "No"). Its accuracy on held-out prompts is
measured and written into the summary: it is a small real judge, not a stub that always agrees.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from sherlock.data.response import extract_answer
from sherlock.embedded import qwen_vl
from sherlock.embedded.tokenizer import judge_prompt_text
from sherlock.online.judge import JudgeItem, judge_prompt, says_yes


def judge_examples(
    questions_answers: Sequence[tuple[str, str]], count: int, rng: random.Random
) -> list[tuple[JudgeItem, bool]]:
    """``count`` judge items, half equivalent (one answer three times) and half not (a different
    answer of the same question kind in one of the three places)."""
    answers = sorted({answer for _, answer in questions_answers})
    if len(answers) < 2:
        raise ValueError("the judge's training data needs at least two distinct answers")
    examples = []
    for index in range(count):
        question, answer = rng.choice(questions_answers)
        same = index % 2 == 0
        trio = [answer] * 3
        if not same:
            trio[rng.randrange(3)] = rng.choice([a for a in answers if a != answer])
        examples.append((JudgeItem(question, tuple(trio)), same))
    return examples


def _encode(tokenizer: Any, item: JudgeItem, verdict: bool | None) -> list[int]:
    messages = [{"role": "user", "content": judge_prompt(judge_prompt_text(), item)}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if verdict is not None:
        text += ("Yes" if verdict else "No") + qwen_vl.IM_END
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _batch(rows: list[list[int]], prompt_lengths: list[int], pad_id: int) -> dict[str, Any]:
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), pad_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (tokens, start) in enumerate(zip(rows, prompt_lengths, strict=True)):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, start : len(tokens)] = torch.tensor(tokens[start:])
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@torch.inference_mode()
def judge_accuracy(model: Any, tokenizer: Any, examples: Sequence[tuple[JudgeItem, bool]]) -> float:
    """Share of examples whose greedy reply says Yes exactly when the answers are equal."""
    tokenizer.padding_side = "left"
    right = 0
    for start in range(0, len(examples), 32):
        chunk = examples[start : start + 32]
        rows = [_encode(tokenizer, item, None) for item, _ in chunk]
        length = max(map(len, rows))
        ids = torch.tensor([[tokenizer.pad_token_id] * (length - len(r)) + r for r in rows])
        starts = torch.tensor([length - len(r) for r in rows])[:, None]
        mask = torch.arange(length)[None] >= starts
        out = model.generate(
            input_ids=ids, attention_mask=mask.long(), max_new_tokens=3, do_sample=False
        )
        replies = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
        right += sum(
            says_yes(reply) == same for reply, (_, same) in zip(replies, chunk, strict=True)
        )
    return right / len(examples)


def build_tiny_judge(
    out_dir: Path,
    records: Iterable[dict[str, Any]],
    *,
    seed: int,
    steps: int,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    learning_rate: float = 3e-3,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Train and write the tiny judge from LLaVA-CoT records (question, four-stage answer)."""
    records = list(records)
    corpus = [turn["value"].replace("<image>", "") for r in records for turn in r["conversations"]]
    questions_answers = []
    for record in records:
        answer = extract_answer(record["conversations"][-1]["value"])
        if answer:
            question = record["conversations"][0]["value"].replace("<image>", "").strip()
            questions_answers.append((question, answer))
    rng = random.Random(seed)
    train = judge_examples(questions_answers, steps * batch_size, rng)
    heldout = judge_examples(questions_answers, 128, random.Random(seed + 1))

    tokenizer = qwen_vl.train_tokenizer([*corpus, judge_prompt_text(), "Yes", "No"], vocab_size)
    heads = max(1, hidden_size // 16)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for step in range(steps):
        chunk = train[step * batch_size : (step + 1) * batch_size]
        rows = [_encode(tokenizer, item, same) for item, same in chunk]
        starts = [len(_encode(tokenizer, item, None)) for item, _ in chunk]
        loss = model(**_batch(rows, starts, tokenizer.pad_token_id)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    accuracy = judge_accuracy(model, tokenizer, heldout)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(out_dir)
    summary = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "heldout_accuracy": round(accuracy, 4),
        "heldout_items": len(heldout),
        "seed": seed,
    }
    (out_dir / "tiny_judge.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
