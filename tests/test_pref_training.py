"""The trainer side of issue 3: ten-sequence encoding, log-probabilities, records, training."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.chat import render_prompt
from sherlock.data.prompts import load_prompt, refine_prompt
from sherlock.data.records import strip_image_token
from sherlock.perturbation.recipes import truncate
from sherlock.preference.encoding import (
    IGNORE_INDEX,
    collate_sequences,
    encode_example,
    encode_sequence,
    sequence_log_probs,
    sequence_specs,
)
from sherlock.preference.losses import SEQUENCE_NAMES
from sherlock.preference.records import (
    PreferenceDataError,
    PreferenceExample,
    load_preferences,
    parse_preference_row,
    preference_row,
)
from sherlock.preference.trainer import (
    PreferenceCollator,
    PreferenceDataset,
    SherlockTrainer,
    batch_log_probs,
    by_name,
    record_betas,
)

REFINE = load_prompt("refine")
from defaults import (  # noqa: E402
    FREEZE_KEYS,
    coefficients_of,
    objective_keys,
    perturbation,
    training_args,
)

# β = 0.1, β_r = 0.025 (the embedded default's), reference recipe.
CONFIG = coefficients_of(perturbation({"recipe": "reference"}), 0.1, 0.025)


def wrong_answer(answer: str) -> str:
    """The same head, a different reasoning and conclusion."""
    head = answer[: answer.index("<REASONING>")]
    return head + "<REASONING>I cannot tell.</REASONING><CONCLUSION>nothing</CONCLUSION>"


def make_examples(records: list[dict], synthetic_dir: Path, count: int) -> list[PreferenceExample]:
    """Preference records from synthetic ones: chosen = Y*, rejected = Y* cut at i plus junk."""
    examples = []
    for n, record in enumerate(records[:count]):
        question = strip_image_token(record["conversations"][0]["value"])
        chosen = record["conversations"][1]["value"]
        truncation = n % 3
        prefix = truncate(chosen, truncation, "reference")
        rejected = wrong_answer(chosen)
        examples.append(
            PreferenceExample(
                id=record["id"],
                image=str(synthetic_dir / record["image"]),
                question=question,
                chosen=chosen,
                rejected=rejected,
                prefix=prefix,
                prefix_l=truncate(rejected, truncation, "reference"),
                truncation=truncation,
                # as the reference recipe draws them: ε in [0.15, 0.25], and ε = 1 (random
                # pixels) at its deepest point i = 2
                noise_level=1.0 if truncation == 2 else 0.2,
            )
        )
    return examples


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def examples(records: list[dict], synthetic_dir: Path) -> list[PreferenceExample]:
    return make_examples(records, synthetic_dir, 8)


# -- the ten sequences -------------------------------------------------------------------------


def test_ten_sequences_are_the_method_ones(examples: list[PreferenceExample]) -> None:
    ex = examples[1]  # truncation 1: prefix = SUMMARY, non-empty
    assert ex.prefix and ex.prefix == ex.prefix_l
    specs = sequence_specs(ex, REFINE)
    assert tuple(specs) == SEQUENCE_NAMES
    c_l = refine_prompt(REFINE, ex.question, ex.rejected)
    c_w = refine_prompt(REFINE, ex.question, ex.chosen)
    assert (specs["direct_w"].user_text, specs["direct_w"].target) == (ex.question, ex.chosen)
    assert (specs["direct_l"].user_text, specs["direct_l"].target) == (ex.question, ex.rejected)
    assert specs["direct_w"].assistant_prefix == specs["direct_l"].assistant_prefix == ""
    # docs/method.md §6: A1 = (C ⊕ p_w, s_w), B1 = (C ⊕ p_l, s_l),
    #               A2 = (C ⊕ p_l, s_w), B2 = (C ⊕ p_w, s_l)
    for tag, context in (("l", c_l), ("w", c_w)):
        expected = {
            "A1": (ex.prefix, ex.suffix_w),
            "B1": (ex.prefix_l, ex.suffix_l),
            "A2": (ex.prefix_l, ex.suffix_w),
            "B2": (ex.prefix, ex.suffix_l),
        }
        for part, (prefix, target) in expected.items():
            spec = specs[f"{tag}_{part}"]
            assert (spec.user_text, spec.assistant_prefix, spec.target) == (context, prefix, target)
    assert ex.prefix + ex.suffix_w == ex.chosen and ex.prefix_l + ex.suffix_l == ex.rejected


def test_cross_pairs_take_the_other_prefix_when_the_prefixes_differ(synthetic_dir, records):
    """A Stage III record: chosen = y3 and rejected = y0 cut at the same point (here after the
    SUMMARY), whose heads differ. A2 pairs the rejected head with the chosen suffix and B2 the
    chosen head with the rejected suffix; written out literally, so a swap cannot pass."""
    y3 = "<SUMMARY>Count the squares.</SUMMARY><CAPTION>Two squares.</CAPTION>" + (
        "<REASONING>Two.</REASONING><CONCLUSION>2</CONCLUSION>"
    )
    y0 = "<SUMMARY>Look at the picture.</SUMMARY><CAPTION>One square.</CAPTION>" + (
        "<REASONING>One.</REASONING><CONCLUSION>1</CONCLUSION>"
    )
    ex = PreferenceExample(
        id="online-1", image=str(synthetic_dir / records[0]["image"]), question="How many?",
        chosen=y3, rejected=y0, prefix="<SUMMARY>Count the squares.</SUMMARY>",
        prefix_l="<SUMMARY>Look at the picture.</SUMMARY>", truncation=1, noise_level=0.2,
    )  # fmt: skip
    s_w = "<CAPTION>Two squares.</CAPTION><REASONING>Two.</REASONING><CONCLUSION>2</CONCLUSION>"
    s_l = "<CAPTION>One square.</CAPTION><REASONING>One.</REASONING><CONCLUSION>1</CONCLUSION>"
    specs = sequence_specs(ex, REFINE)
    c_l = refine_prompt(REFINE, "How many?", y0)
    c_w = refine_prompt(REFINE, "How many?", y3)
    expected = {
        "A1": ("<SUMMARY>Count the squares.</SUMMARY>", s_w),
        "B1": ("<SUMMARY>Look at the picture.</SUMMARY>", s_l),
        "A2": ("<SUMMARY>Look at the picture.</SUMMARY>", s_w),
        "B2": ("<SUMMARY>Count the squares.</SUMMARY>", s_l),
    }
    for tag, context in (("l", c_l), ("w", c_w)):
        for part, (head, target) in expected.items():
            spec = specs[f"{tag}_{part}"]
            assert (spec.user_text, spec.assistant_prefix, spec.target) == (context, head, target)
    assert "Look at the picture." in c_l and "Count the squares." in c_w


def test_labels_cover_exactly_the_suffix(processor, examples: list[PreferenceExample]) -> None:
    tokenizer = processor.tokenizer
    for ex in examples[:3]:  # truncation 0, 1, 2
        specs = sequence_specs(ex, REFINE)
        with Image.open(ex.image) as handle:
            image = handle.convert("RGB")
        for name, sequence in zip(
            SEQUENCE_NAMES, encode_example(processor, ex, REFINE), strict=True
        ):
            spec = specs[name]
            ids, labels = sequence["input_ids"], sequence["labels"]
            in_target = labels != IGNORE_INDEX
            n_target = int(in_target.sum())
            # The labelled positions are one contiguous block at the end ...
            assert bool(in_target[-n_target:].all()) and not bool(in_target[:-n_target].any())
            assert torch.equal(labels[-n_target:], ids[-n_target:])
            # ... holding exactly the target's tokens and the template's end of the turn.
            target_ids = tokenizer(spec.target + "<|im_end|>\n", add_special_tokens=False)
            assert ids[-n_target:].tolist() == target_ids["input_ids"]
            # The context is the rendered prompt with the prefix pre-filled in the assistant turn.
            prompt = render_prompt(processor, spec.user_text, spec.assistant_prefix)
            alone = processor(text=[prompt], images=[image], return_tensors="pt")["input_ids"][0]
            assert ids[:-n_target].tolist() == alone.tolist()
            context = tokenizer.decode(ids[:-n_target])
            assert context.endswith("<|im_start|>assistant\n" + spec.assistant_prefix)
            # The image is in every sequence.
            assert int((ids == tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum()) == 4
            assert sequence["vision"]["image_grid_thw"].tolist() == [[1, 4, 4]]


def test_cutoff_len_cuts_the_target_and_refuses_a_too_long_prompt(
    processor, examples: list[PreferenceExample]
) -> None:
    ex = examples[0]
    spec = sequence_specs(ex, REFINE)["direct_w"]
    with Image.open(ex.image) as handle:
        image = handle.convert("RGB")
    whole = encode_sequence(processor, image, spec)
    n_prompt = int((whole["labels"] == IGNORE_INDEX).sum())
    cut = encode_sequence(processor, image, spec, cutoff_len=n_prompt + 3)
    assert len(cut["input_ids"]) == n_prompt + 3
    assert torch.equal(cut["input_ids"], whole["input_ids"][: n_prompt + 3])
    with pytest.raises(ValueError, match="more than cutoff_len"):
        encode_sequence(processor, image, spec, cutoff_len=n_prompt)


def _log_probs_alone(model, processor, ex: PreferenceExample) -> torch.Tensor:
    """ℓ of each sequence run on its own (no padding) with a full log-softmax: the slow truth."""
    values = []
    for sequence in encode_example(processor, ex, REFINE):
        batch = collate_sequences([sequence], pad_id=0)
        labels = batch.pop("labels")
        with torch.no_grad():
            logits = model(**batch, use_cache=False).logits[0, :-1]
        targets = labels[0, 1:]
        mask = targets != IGNORE_INDEX
        token_logps = torch.log_softmax(logits.float(), -1)[mask].gather(
            -1, targets[mask].unsqueeze(-1)
        )
        values.append(token_logps.sum())
    return torch.stack(values)


def test_batched_log_probs_match_each_sequence_alone(
    model, processor, examples: list[PreferenceExample]
) -> None:
    # Record 0 twice around a record of another length: padding and position must not matter.
    picked = [examples[0], examples[2], examples[0]]
    sequences = [s for ex in picked for s in encode_example(processor, ex, REFINE)]
    batch = collate_sequences(sequences, processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logps, counts = sequence_log_probs(model, batch)
    table = logps.view(3, len(SEQUENCE_NAMES))
    torch.testing.assert_close(table[0], table[2], rtol=0, atol=1e-4)
    torch.testing.assert_close(
        table[0], _log_probs_alone(model, processor, examples[0]), atol=1e-3, rtol=1e-5
    )
    torch.testing.assert_close(
        table[1], _log_probs_alone(model, processor, examples[2]), atol=1e-3, rtol=1e-5
    )
    # Same suffix in the same context: A1 and B2 of record 0 share neither, A1 of l and w do not
    # share context, but l_A1 (C_l ⊕ p_w, s_w) and l_A2 (C_l ⊕ p_l, s_w) are the same sequence
    # when p_w = p_l, as they are here.
    names = {name: j for j, name in enumerate(SEQUENCE_NAMES)}
    assert examples[0].prefix == examples[0].prefix_l
    assert table[0, names["l_A1"]] == pytest.approx(float(table[0, names["l_A2"]]), abs=1e-4)
    # the target: the chosen response and the template's "<|im_end|>\n"
    target = processor.tokenizer(examples[0].chosen + "<|im_end|>\n", add_special_tokens=False)
    assert counts.view(3, -1)[0, names["direct_w"]] == len(target["input_ids"])
    assert bool((logps < 0).all())


# -- preference records ------------------------------------------------------------------------


def test_seed_format_loads(tmp_path: Path, synthetic_dir: Path, records: list[dict]) -> None:
    """The seed's documented keys only: no id, no i, no ε; a weight; image relative to a root."""
    chosen = records[0]["conversations"][1]["value"]
    prefix = truncate(chosen, 1, "reference")
    row = {
        "conversations": [{"from": "human", "value": "<image>What colour is the circle?"}],
        "chosen": {"from": "gpt", "value": chosen},
        "rejected": {"from": "gpt", "value": prefix + "<CAPTION>x</CAPTION>"},
        "prefix": prefix,
        "prefix_l": prefix,
        "weights": 0.5,
        "images": [records[0]["image"]],
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps([row]))
    (ex,) = load_preferences(path, image_root=synthetic_dir)
    assert ex.id == "0" and ex.weight == 0.5 and ex.truncation is None
    assert ex.question == "What colour is the circle?"
    assert Path(ex.image) == synthetic_dir / records[0]["image"] and Path(ex.image).exists()
    assert ex.suffix_l == "<CAPTION>x</CAPTION>"
    assert record_betas(ex, CONFIG) == pytest.approx((0.05, 0.0125))
    paper = coefficients_of(perturbation({"recipe": "paper"}))
    with pytest.raises(PreferenceDataError, match="paper recipe needs each record's truncation"):
        record_betas(ex, paper)


def test_our_records_round_trip_and_take_beta_from_i_and_eps(
    examples: list[PreferenceExample],
) -> None:
    ex = examples[2]
    parsed = parse_preference_row(preference_row(ex, model="m"), 0, "file.json")
    assert parsed == ex
    _, beta_dpo, beta_sc = CONFIG.for_draw(2, 1.0)
    assert record_betas(ex, CONFIG) == pytest.approx((beta_dpo, beta_sc))
    w = 1 / (0.5 + (2 / 4) ** (0.5 + 0.5 * 1.0))  # docs/method.md §4: w = 1 at i = 2, ε = 1
    assert w == pytest.approx(1.0)
    assert record_betas(ex, CONFIG) == pytest.approx((0.1 * w, 0.025 * w))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prefix": "<SUMMARY>not the head</SUMMARY>"}, "prefix"),
        ({"prefix_l": "<CAPTION>"}, "prefix_l"),
        ({"rejected": None}, "rejected"),
        ({"images": []}, "images"),
        ({"weights": "heavy"}, "weights"),
        ({"conversations": []}, "conversations"),
    ],
)
def test_bad_records_name_file_record_and_field(
    examples: list[PreferenceExample], change: dict, field: str
) -> None:
    row = {**preference_row(examples[1]), **change}
    with pytest.raises(PreferenceDataError) as error:
        parse_preference_row(row, 7, "prefs.json")
    message = str(error.value)
    assert message.startswith(f"prefs.json: record 7 (id {examples[1].id}): ")
    assert field in message


# -- the trainer -------------------------------------------------------------------------------


def _trainer(tiny_model_dir: Path, tmp_path: Path, examples, processor, **overrides):
    args = training_args(
        tmp_path / "out",
        precompute_ref_log_probs=overrides.pop("precompute_ref_log_probs", True),
        bf16=False,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=overrides.pop("learning_rate", 3e-3),
        num_train_epochs=overrides.pop("num_train_epochs", 1),
        lr_scheduler_type="constant",
        logging_steps=1,
        seed=3,
        **{key: overrides.pop(key, False) for key in FREEZE_KEYS},
        **overrides,
    )
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference = None
    if not args.precompute_ref_log_probs:
        reference = copy.deepcopy(model)
    dataset = PreferenceDataset(examples, processor, REFINE, CONFIG, args.max_length)
    return SherlockTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
        reference_model=reference,
    )


def test_collator_keeps_records_together_and_encodes_repeats_once(
    processor, examples: list[PreferenceExample]
) -> None:
    dataset = PreferenceDataset(examples[:3], processor, REFINE, CONFIG, None)
    items = [dataset[i] for i in range(3)]
    batch = PreferenceCollator(processor.tokenizer.pad_token_id)(items)
    assert batch["index"].tolist() == [0, 1, 2]
    assert batch["beta_dpo"].shape == (3,)
    rows = batch["sequence_rows"]
    assert rows.shape == (3 * len(SEQUENCE_NAMES),)
    # p_w = p_l in these records, so A1 = A2 and B1 = B2 under each context: 6 distinct each.
    assert batch["input_ids"].shape[0] == 3 * 6
    names = by_name(rows, 3)
    assert torch.equal(names["l_A1"], names["l_A2"]) and torch.equal(names["w_B1"], names["w_B2"])
    assert len(set(rows.tolist())) == 18
    # Sequence j of record r maps to a row holding exactly that sequence's tokens and labels.
    for r, item in enumerate(items):
        for j, sequence in enumerate(item["sequences"]):
            row = int(rows[r * len(SEQUENCE_NAMES) + j])
            n = len(sequence["input_ids"])
            assert torch.equal(batch["input_ids"][row, :n], sequence["input_ids"])
            assert torch.equal(batch["labels"][row, :n], sequence["labels"])
            assert int(batch["attention_mask"][row].sum()) == n
    # Records whose prefixes differ keep all ten.
    different = dataclasses.replace(
        examples[1],
        prefix_l="",
        rejected=examples[1].rejected,  # i = 1: p_w = SUMMARY, p_l = ""
    )
    dataset = PreferenceDataset([different], processor, REFINE, CONFIG, None)
    batch = PreferenceCollator(processor.tokenizer.pad_token_id)([dataset[0]])
    assert batch["input_ids"].shape[0] == len(SEQUENCE_NAMES)


def test_precomputed_reference_is_the_initial_policy_and_matches_on_the_fly(
    tiny_model_dir: Path, tmp_path: Path, processor, examples: list[PreferenceExample]
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, examples[:4], processor)
    table = trainer.precompute_reference()
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[i] for i in range(4)])
    with torch.no_grad():
        logps, _ = batch_log_probs(trainer.model.eval(), batch)
    torch.testing.assert_close(table.reshape(-1), logps, atol=1e-4, rtol=1e-5)
    # At the start policy = reference: every Δ is 0, so the loss is the hand value
    # 0.2·log 2 (DPO) + 0.8·(1 + 1) (both squared self-correction terms) = 1.7386.
    with torch.no_grad():
        precomputed = trainer.compute_loss(trainer.model, batch)
    assert float(precomputed) == pytest.approx(
        0.2 * torch.log(torch.tensor(2.0)).item() + 1.6, abs=1e-4
    )
    on_the_fly = _trainer(
        tiny_model_dir, tmp_path, examples[:4], processor, precompute_ref_log_probs=False
    )
    reference_logps = batch.pop("reference_logps")
    with torch.no_grad():
        value = on_the_fly.compute_loss(on_the_fly.model.eval(), batch)
    assert float(value) == pytest.approx(float(precomputed), abs=1e-4)

    # Δ ≠ 0: move both policies away from the reference by the same seeded step. The table
    # (of the untouched model) and the on-the-fly frozen copy must still give one loss, and it
    # must no longer be the Δ = 0 value, or the comparison above would hold for any β.
    for policy in (trainer.model, on_the_fly.model):
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for parameter in policy.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    with torch.no_grad():
        moved_on_the_fly = on_the_fly.compute_loss(on_the_fly.model.eval(), batch)
        moved = trainer.compute_loss(trainer.model, {**batch, "reference_logps": reference_logps})
    assert abs(float(moved) - float(precomputed)) > 1e-3
    assert float(moved_on_the_fly) == pytest.approx(float(moved), abs=1e-4)


def test_tiny_training_lowers_the_loss_and_separates_the_pair(
    tiny_model_dir: Path, tmp_path: Path, processor, examples: list[PreferenceExample]
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, examples, processor, num_train_epochs=6)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 12  # 8 records / batch 4 × 6 epochs, one log line per step
    for key in ("loss/dpo", "loss/sc_rejected", "rewards/margins", "rewards/accuracies"):
        assert key in logs[0]
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # policy = reference
    first, last = logs[0]["loss"], sum(entry["loss"] for entry in logs[-2:]) / 2
    assert last < 0.8 * first
    assert logs[-1]["rewards/margins"] > 0 and logs[-1]["rewards/accuracies"] > 0.5


def test_several_gpus_relaunch_under_torchrun_once() -> None:
    from sherlock.preference.run import distributed_relaunch

    argv = ["train_sherlock.py", "run.yaml", "--model-dir", "out"]
    command = distributed_relaunch(argv, {}, gpu_count=8)
    assert command is not None and command[0].endswith("torchrun")
    assert command[1:] == ["--standalone", "--nproc_per_node=8", *argv]
    assert distributed_relaunch(argv, {"LOCAL_RANK": "0"}, gpu_count=8) is None  # launched
    assert distributed_relaunch(argv, {}, gpu_count=1) is None
    assert distributed_relaunch(argv, {}, gpu_count=0) is None


def test_training_runs_under_torchrun_with_two_processes(
    tiny_model_dir: Path, tmp_path: Path, examples: list[PreferenceExample]
) -> None:
    """The workflow's entry point, launched as on a multi-GPU node (here: 2 CPU processes)."""
    import subprocess
    import sys

    import yaml

    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps([preference_row(ex) for ex in examples]))
    run = tmp_path / "run.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                **objective_keys(),
                "model_name_or_path": str(tiny_model_dir),
                "dataset": str(prefs),
                "output_dir": str(tmp_path / "model.partial"),
                "per_device_train_batch_size": 2,
                "num_train_epochs": 1,
                "learning_rate": 1e-3,
                "logging_steps": 1,
                "save_strategy": "no",
                "report_to": "none",
            }
        )
    )
    script = Path(__file__).resolve().parents[1] / "workflow_scripts" / "train_sherlock.py"
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(run)]
        + ["--model-dir", str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = json.loads((tmp_path / "model" / "sherlock_training.json").read_text())
    # 8 records over 2 processes × 2 per device: 2 optimiser steps, each over 4 records
    steps = [entry for entry in log["log_history"] if "loss" in entry]
    assert log["records"] == 8 and len(steps) == 2
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "model.partial").exists()


def test_sft_term_sums_the_mean_token_nll_of_each_chosen_target(
    tiny_model_dir: Path, tmp_path: Path, processor, examples: list[PreferenceExample]
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, examples[:2], processor, rpo_alpha=0.5)
    trainer.precompute_reference()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model.eval(), batch))
        logps, counts = batch_log_probs(trainer.model, batch)
    logps, counts = logps.view(2, -1), counts.view(2, -1)
    chosen = [SEQUENCE_NAMES.index(n) for n in ("direct_w", "l_A1", "l_A2", "w_A1", "w_A2")]
    # by hand, per record: each chosen target's own token-mean NLL, summed (the authors' term)
    nll = (-logps[:, chosen] / counts[:, chosen]).sum(-1)
    at_start = 0.2 * torch.log(torch.tensor(2.0)).item() + 1.6  # every Δ is 0
    assert loss == pytest.approx(at_start + 0.5 * float(nll.mean()), abs=1e-4)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_model(
    tiny_model_dir: Path, tmp_path: Path, examples: list[PreferenceExample], monkeypatch
) -> None:
    """Crash at step 4 of 8 (checkpoint at step 2), rerun: the resumed model equals an
    uninterrupted run's, its summary reports the uninterrupted mean loss, and its TensorBoard
    curve has every step once (step 3, logged by both attempts, is dropped from the first).

    It would not if the resumed attempt recomputed the reference log-probs with the already
    updated policy, restarted the data order, or lost the optimizer state.
    """
    import time

    import yaml
    from safetensors.torch import load_file
    from test_tracking import scalars

    from sherlock.preference.run import prepare_run, train_from_file
    from sherlock.runtime.resumable_training import checkpoint_step
    from sherlock.runtime.tracking import Tracking

    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps([preference_row(ex) for ex in examples]))

    def run_file(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        settings = {
            **objective_keys(),
            "model_name_or_path": str(tiny_model_dir),
            "dataset": str(prefs),
            "output_dir": str(tmp_path / f"{name}.partial"),
            "per_device_train_batch_size": 2,
            "num_train_epochs": 2,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_strategy": "steps",
            "save_steps": 2,
            "save_total_limit": 2,
            "report_to": "none",
            "seed": 3,
        }
        path.write_text(yaml.safe_dump(settings))
        return path

    uninterrupted = run_file("whole")
    assert prepare_run(uninterrupted, resume=True) is None
    whole_summary = train_from_file(uninterrupted, tmp_path / "whole")

    interrupted = run_file("resumed")
    original_step = SherlockTrainer.training_step
    steps = {"n": 0}

    def crash_at_fourth_step(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 4:
            raise KeyboardInterrupt("killed")
        return original_step(self, *args, **kwargs)

    tracking = Tracking("tensorboard", str(tmp_path / "tracking" / "resumed"))
    monkeypatch.setattr(SherlockTrainer, "training_step", crash_at_fourth_step)
    assert prepare_run(interrupted, resume=True) is None
    tracking.start(None)
    with pytest.raises(KeyboardInterrupt):
        train_from_file(interrupted, tmp_path / "resumed", tracking=tracking)
    monkeypatch.setattr(SherlockTrainer, "training_step", original_step)
    assert not (tmp_path / "resumed").exists()  # no half-made checkpoint target
    time.sleep(1.1)  # the rerun of a killed job comes later (event files are named by second)
    checkpoint = prepare_run(interrupted, resume=True)
    assert checkpoint == tmp_path / "resumed.partial" / "checkpoint-2"
    tracking.start(checkpoint_step(checkpoint))
    summary = train_from_file(interrupted, tmp_path / "resumed", checkpoint, tracking)

    assert summary["records"] == 8 and summary["records_without_weight"] == 8
    # The summary's mean loss is the whole logged history's, as uninterrupted (it was 0.35
    # against 1.78 when Trainer's train_loss, which forgets the steps before the resume, served).
    resumed_history = summary["log_history"]
    assert [e["step"] for e in resumed_history if "loss" in e] == list(range(1, 9))
    assert summary["train_loss"] == pytest.approx(whole_summary["train_loss"], rel=1e-5)
    trainers_own = whole_summary["log_history"][-1]["train_loss"]
    assert whole_summary["train_loss"] == pytest.approx(trainers_own)  # uninterrupted: agree
    assert resumed_history[-1]["train_loss"] < 0.9 * summary["train_loss"]  # Trainer's own
    curve = scalars(tmp_path / "tracking" / "resumed")["train/loss"]
    assert [step for step, _ in curve] == list(range(1, 9))
    assert [value for _, value in curve] == [
        pytest.approx(e["loss"], rel=1e-5) for e in resumed_history if "loss" in e
    ]
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=1e-6)
    initial = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(initial[name], whole[name]) for name in whole)  # it trained
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-*")) == []


def test_dropout_is_off_in_policy_and_reference(
    tiny_model_dir: Path, tmp_path: Path, processor, examples: list[PreferenceExample]
) -> None:
    from transformers import AutoConfig

    from sherlock.preference.dropout import disable_dropout

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.text_config.attention_dropout = 0.5  # the language model's attention dropout

    def with_dropout():
        model = AutoModelForImageTextToText.from_pretrained(
            tiny_model_dir, config=config, dtype=torch.float32
        )
        model.add_module("extra_dropout", torch.nn.Dropout(0.3))  # a torch dropout module too
        return model

    dataset = PreferenceDataset(examples[:1], processor, REFINE, CONFIG, None)
    batch = PreferenceCollator(processor.tokenizer.pad_token_id)([dataset[0]])

    def logps(model) -> torch.Tensor:
        with torch.no_grad():
            return batch_log_probs(model.train(), batch)[0]

    noisy = with_dropout()
    torch.manual_seed(0)
    assert not torch.equal(logps(noisy), logps(noisy))  # dropout is really on
    for disable in (True, False):
        policy, reference = with_dropout(), with_dropout()
        args = training_args(
            tmp_path / f"out{disable}", precompute_ref_log_probs=False, disable_dropout=disable
        )
        SherlockTrainer(
            model=policy,
            args=args,
            train_dataset=dataset,
            data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
            processing_class=processor,
            reference_model=reference,
        )
        assert (policy.extra_dropout.p == 0) is disable
        for model in (policy, reference):
            rates = {getattr(m, "attention_dropout", 0.0) for m in model.modules()}
            assert rates == ({0.0} if disable else {0.0, 0.5})  # the vision tower's is always 0
    # Turned off, training mode gives the eval-mode values, pass after pass.
    model = with_dropout()
    assert disable_dropout(model) == 1 + config.text_config.num_hidden_layers
    first = logps(model)
    torch.testing.assert_close(logps(model), first, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(batch_log_probs(model.eval(), batch)[0], first)
