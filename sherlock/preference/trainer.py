"""The Sherlock preference trainer: our own ``transformers.Trainer`` subclass, nothing patched.

One optimisation step = ONE forward/backward pass over the ten sequences of every record in the
batch (docs/method.md §6); the reference log-probabilities are computed once, before training, by
the model the policy starts from (``precompute_ref_log_probs``, the default), or on the fly by a
frozen copy of it when that is turned off. Each record's image goes through the vision tower once
per pass for all its sequences (``share_vision_features``, ``sherlock.preference.vision_sharing``).
The mathematics lives in ``sherlock.preference.losses``.
The parts of the model the freeze keys name are not trained (``sherlock.preference.freezing``);
before anything runs, every record is checked against ``cutoff_len``. A LoRA policy
(``sherlock.preference.lora``) trains its adapter only, and its reference is the same weights
with the adapter off. No step is applied with a loss or gradient that is not finite
(``sherlock.runtime.finite_guard``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback

from sherlock.preference.coefficients import Coefficients
from sherlock.preference.dropout import disable_dropout
from sherlock.preference.encoding import collate_sequences, encode_example, sequence_log_probs
from sherlock.preference.freezing import freeze
from sherlock.preference.lengths import LongestContext, longest_context, overflow_message
from sherlock.preference.lora import peft_model, reference_weights
from sherlock.preference.losses import SEQUENCE_NAMES, chosen_nll, sherlock_loss
from sherlock.preference.records import PreferenceDataError, PreferenceExample
from sherlock.preference.sharding import zero3_full_state_dict, zero3_on_gloo
from sherlock.runtime.atomic import atomic_output
from sherlock.runtime.finite_guard import (
    FiniteGuard,
    GradientCheck,
    guarded_deepspeed_engine,
    is_finite,
)
from sherlock.runtime.resumable_training import REFERENCE_TABLE

N_SEQ = len(SEQUENCE_NAMES)


def record_betas(example: PreferenceExample, coefficients: Coefficients) -> tuple[float, float]:
    """(β_dpo, β_sc) of one record: from its drawn i and ε when it has them; a record of another
    tool with only ``weights`` (or none: w = 1) gets the reference recipe's w·β and w·β_r."""
    if example.truncation is not None and example.noise_level is not None:
        _, beta_dpo, beta_sc = coefficients.for_draw(example.truncation, example.noise_level)
        return beta_dpo, beta_sc
    try:
        return coefficients.for_weight(1.0 if example.weight is None else example.weight)
    except ValueError as error:
        raise PreferenceDataError(f"record {example.id}: {error}") from None


class PreferenceDataset(Dataset):
    """Records encoded lazily into their ten sequences (images are processed per item)."""

    def __init__(
        self,
        examples: list[PreferenceExample],
        processor: Any,
        refine_template: str,
        coefficients: Coefficients,
        cutoff_len: int | None,
        pixels: tuple[int, int] | None = None,
    ) -> None:
        self.examples = examples
        self.processor = processor
        self.refine_template = refine_template
        self.cutoff_len = cutoff_len
        self.pixels = pixels  # (min, max) of Stage I's images; None: as stored
        self.betas = torch.tensor(
            [record_betas(e, coefficients) for e in examples], dtype=torch.float32
        )
        self.reference_logps: torch.Tensor | None = None  # (records, 10) once precomputed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {
            "index": index,
            "sequences": encode_example(
                self.processor,
                self.examples[index],
                self.refine_template,
                self.cutoff_len,
                self.pixels,
            ),
            "beta_dpo": self.betas[index, 0],
            "beta_sc": self.betas[index, 1],
        }
        if self.reference_logps is not None:
            item["reference_logps"] = self.reference_logps[index]
        return item

    def longest_context(self, index: int) -> LongestContext:
        """The longest of record ``index``'s ten contexts, as training encodes them."""
        return longest_context(
            self.processor, self.examples[index], self.refine_template, self.pixels
        )


def process_share(count: int, rank: int, world: int) -> list[int]:
    """The record indices process ``rank`` of ``world`` handles: every world-th from its rank.

    Every share has the same length (the short ones repeat their last index), so every process
    runs the same number of forward passes: under ZeRO-3 each pass gathers the parameters from
    all processes at once, and a process with one batch fewer would leave the others waiting.
    """
    share = list(range(rank, count, world))
    size = -(-count // world)
    return share + [share[-1] if share else 0] * (size - len(share))


class PreferenceCollator:
    """B records → one batch of their distinct sequences, right-padded.

    Sequences that are identical within a record are encoded once: when p_w = p_l (always in
    the offline pairs, whose prefixes are both cut from Y*) A1 = A2 and B1 = B2 under each
    context, so 6 of the 10 sequences carry all the information. ``sequence_rows`` maps the
    record-major B×10 sequences (``by_name`` order) to their rows in the batch;
    ``sequence_images`` numbers each row's image (its record in the batch).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        distinct: list[dict[str, Any]] = []
        rows: list[int] = []
        images: list[int] = []
        for record, item in enumerate(items):
            seen: dict[tuple, int] = {}
            for sequence in item["sequences"]:
                key = (record, *sequence["input_ids"].tolist(), -1, *sequence["labels"].tolist())
                if key not in seen:
                    seen[key] = len(distinct)
                    distinct.append(sequence)
                    images.append(record)
                rows.append(seen[key])
        batch = collate_sequences(distinct, self.pad_id)
        batch["sequence_rows"] = torch.tensor(rows)
        batch["sequence_images"] = torch.tensor(images)  # a record's sequences share its image
        batch["beta_dpo"] = torch.stack([item["beta_dpo"] for item in items])
        batch["beta_sc"] = torch.stack([item["beta_sc"] for item in items])
        batch["index"] = torch.tensor([item["index"] for item in items])
        if "reference_logps" in items[0]:
            batch["reference_logps"] = torch.stack([item["reference_logps"] for item in items])
        return batch


def by_name(values: torch.Tensor, records: int) -> dict[str, torch.Tensor]:
    """(records × 10) flat values → {sequence name: (records,)}."""
    table = values.view(records, N_SEQ)
    return {name: table[:, j] for j, name in enumerate(SEQUENCE_NAMES)}


_NON_MODEL_KEYS = (
    "beta_dpo",
    "beta_sc",
    "index",
    "reference_logps",
    "sequence_rows",
    "sequence_images",
)


def batch_log_probs(
    model: Any, batch: dict[str, Any], share_vision: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """ℓ and target token counts of every record's ten sequences (B×10, record-major).

    With ``share_vision``, each record's image goes through the vision tower once for all its
    sequences where the architecture allows (``sherlock.preference.vision_sharing``).
    """
    model_inputs = {k: v for k, v in batch.items() if k not in _NON_MODEL_KEYS}
    images = batch.get("sequence_images") if share_vision else None
    logps, n_tokens = sequence_log_probs(model, model_inputs, images)
    rows = batch["sequence_rows"].to(logps.device)
    return logps[rows], n_tokens[rows]


class SherlockTrainer(Trainer):
    """transformers.Trainer with the Sherlock objective as its loss."""

    def __init__(
        self, *args: Any, reference_model: Any = None, stage: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # Our loss is already a per-batch mean: let Trainer scale it for gradient accumulation
        # (it skips that for models whose forward takes loss kwargs, assuming a token sum).
        self.model_accepts_loss_kwargs = False
        self.reference_model = reference_model
        self._metrics: dict[str, list[float]] = defaultdict(list)
        if self.args.disable_dropout:
            # As TRL's DPO trainer: no dropout noise in ℓθ (nor in an on-the-fly ℓref).
            disable_dropout(self.model)
            if reference_model is not None:
                disable_dropout(reference_model)
        # Before the optimizer exists (train() builds it from the trainable parameters only).
        self.frozen_parameters = freeze(
            self.model,
            vision_tower=self.args.freeze_vision_tower,
            projector=self.args.freeze_multi_modal_projector,
            language_model=self.args.freeze_language_model,
        )
        # A LoRA policy's reference is its own weights with the adapter off (no copy).
        if not self.args.precompute_ref_log_probs and peft_model(self.model) is None:
            if reference_model is None:
                raise ValueError("precompute_ref_log_probs is off: pass the frozen reference_model")
            if self.is_deepspeed_enabled:
                raise ValueError(
                    "an on-the-fly reference under DeepSpeed is not supported: "
                    "keep precompute_ref_log_probs on"
                )
            reference_model.eval().requires_grad_(False)
            reference_model.to(self.args.device)
        self.add_callback(_BeforeTraining(self))
        # The stage's name in the guard's messages: its model folder (output_dir is its scratch).
        stage = stage or Path(self.args.output_dir).name.removesuffix(".partial")
        self.guard = FiniteGuard(stage, self.args.nonfinite_steps, self.args.output_dir)
        self._step_records: list[str] = []  # ids of the records of the step's micro-batches
        self.add_callback(GradientCheck(self.guard, self._records_of_step, self._device))
        self.add_callback(_GuardHooks(self))

    # -- work shared by the processes ------------------------------------------------------------
    def _gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every process's ``values`` (same shape everywhere), concatenated in rank order."""
        if self.args.world_size == 1:
            return values
        return self.accelerator.gather(values.to(self.args.device)).cpu()

    def _share(self) -> list[int]:
        return process_share(len(self.train_dataset), self.args.process_index, self.args.world_size)

    def check_lengths(self) -> None:
        """Refuse to train when a record's context cannot fit ``cutoff_len``, naming them all.

        Each process measures its share of the records; the shares are gathered, so every
        process raises the same error, before any GPU waits on a reference pass.
        """
        dataset: PreferenceDataset = self.train_dataset
        if dataset.cutoff_len is None:
            return
        indices = self._share()
        quiet = self.args.disable_tqdm or not self.is_world_process_zero()
        lengths = [
            dataset.longest_context(i).tokens
            for i in tqdm(indices, desc="context lengths", disable=quiet)
        ]
        gathered = self._gather(torch.tensor([indices, lengths], dtype=torch.long).T.contiguous())
        too_long = sorted({int(i) for i, n in gathered.tolist() if n >= dataset.cutoff_len})
        if too_long:
            lines = [
                overflow_message(
                    dataset.examples[i].id, dataset.longest_context(i), dataset.cutoff_len
                )
                for i in too_long
            ]
            raise PreferenceDataError(
                f"{len(too_long)} of {len(dataset)} records cannot fit cutoff_len "
                f"{dataset.cutoff_len} (rebuild the pairs, which leaves such records out, or "
                "raise cutoff_len):\n  " + "\n  ".join(lines)
            )

    # -- reference log-probabilities ------------------------------------------------------------
    @torch.no_grad()
    def precompute_reference(self) -> torch.Tensor:
        """ℓref of all ten sequences of every record, with the model before any update.

        The policy starts from the reference checkpoint, so before the first step it IS the
        reference: no second copy of the model is needed. It runs when training begins, after
        the model is placed (and wrapped by DeepSpeed, whose ZeRO-3 forward needs every process
        in step). Each process computes its share of the records (``process_share``), and the
        shares are gathered: the table is computed once per run, not once per process.
        """
        dataset: PreferenceDataset = self.train_dataset
        model = self.model_wrapped if self.is_deepspeed_enabled else self.model
        was_training = model.training
        model.eval()
        indices = self._share()
        loader = DataLoader(
            Subset(dataset, indices),
            batch_size=self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size,
            shuffle=False,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        share = torch.zeros(len(indices), N_SEQ)
        device = self.args.device
        quiet = self.args.disable_tqdm or not self.is_world_process_zero()
        done = 0
        with reference_weights(model):  # a LoRA policy's adapter off (it is still zero here)
            for batch in tqdm(loader, desc="reference log-probs", disable=quiet):
                inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
                logps, _ = batch_log_probs(model, inputs, self.args.share_vision_features)
                rows = len(batch["index"])
                share[done : done + rows] = logps.view(-1, N_SEQ).float().cpu()
                done += rows
        model.train(was_training)
        positions = torch.tensor(indices, dtype=torch.long)
        # The repeats that only keep the processes in step are not written: padding differs
        # between batches, so in bf16 a repeat need not equal the record's own row bit for bit.
        own = len(range(self.args.process_index, len(dataset), self.args.world_size))
        positions[own:] = -1
        positions, values = self._gather(positions), self._gather(share)
        table = torch.zeros(len(dataset), N_SEQ)
        written = positions >= 0
        table[positions[written]] = values[written]
        dataset.reference_logps = table
        return table

    def reference_log_probs(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        """ℓref of the batch on the fly: by the frozen copy, or, for a LoRA policy, by the
        policy's own weights with the adapter off (``sherlock.preference.lora``)."""
        share = self.args.share_vision_features
        if self.reference_model is not None:
            return batch_log_probs(self.reference_model, inputs, share)[0]
        inner = getattr(model, "module", model)  # no DDP bookkeeping for a pass without grad
        with reference_weights(inner):
            return batch_log_probs(inner, inputs, share)[0]

    # -- the guard against non-finite steps (sherlock.runtime.finite_guard) ---------------------
    def _records_of_step(self) -> list[str]:
        return list(self._step_records)

    def _device(self) -> torch.device:
        return self.args.device

    def _check_loss(self, loss: torch.Tensor, inputs: dict[str, Any]) -> None:
        """Before any backward: stop on a non-finite loss (policy stop), or mark the step's
        update to be dropped before the optimizer step (policy skip)."""
        dataset: PreferenceDataset = self.train_dataset
        self._step_records += [dataset.examples[int(i)].id for i in inputs["index"]]
        self.guard.check(
            is_finite(loss),
            what="loss",
            step=self.state.global_step + 1,
            records=self._records_of_step,
            device=self.args.device,
        )

    # -- the loss -------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        records = inputs["beta_dpo"].shape[0]
        share = self.args.share_vision_features
        policy_logps, n_tokens = batch_log_probs(model, inputs, share)
        if "reference_logps" in inputs:
            reference_logps = inputs["reference_logps"].to(policy_logps.device).reshape(-1)
        else:
            with torch.no_grad():
                reference_logps = self.reference_log_probs(model, inputs)
        policy = by_name(policy_logps, records)
        reference = by_name(reference_logps.to(policy_logps.dtype), records)
        nll = None
        if self.args.nll_coef > 0:
            nll = chosen_nll(policy, by_name(n_tokens, records))
        loss, metrics = sherlock_loss(
            policy,
            reference,
            inputs["beta_dpo"].to(policy_logps.dtype),
            inputs["beta_sc"].to(policy_logps.dtype),
            dpo_coef=self.args.dpo_coef,
            sc_coef=self.args.sc_coef,
            sft_coef=self.args.nll_coef,
            policy_mean_nll=nll,
        )
        if model.training:
            self._check_loss(loss, inputs)
        if not self.guard.dropping:  # a skipped step's metrics are not logged
            for key, value in metrics.items():
                self._metrics[key].append(float(value))
        return (loss, {"policy_logps": policy_logps}) if return_outputs else loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``; under ZeRO-3 on the CPU the weights are gathered one parameter
        at a time (DeepSpeed 0.18.2's gather of several races on gloo: .sharding)."""
        if not (self.is_deepspeed_enabled and zero3_on_gloo(self.args)):
            return super().save_model(output_dir, _internal_call)
        state = zero3_full_state_dict(self.model, self.args.should_save)
        if self.args.should_save:
            self._save(output_dir or self.args.output_dir, state_dict=state)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the Sherlock metrics, averaged since the last log, to each training log line."""
        if "loss" in logs and self._metrics:
            for key, values in self._metrics.items():
                logs[key] = round(sum(values) / len(values), 6)
            self._metrics.clear()
        super().log(logs, *args, **kwargs)


class _BeforeTraining(TrainerCallback):
    """At the start of training, before the first batch is drawn: the length check, then the
    reference table (unless it was loaded from a first attempt, or is computed on the fly)."""

    def __init__(self, trainer: SherlockTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.check_lengths()
        if args.precompute_ref_log_probs and self.trainer.train_dataset.reference_logps is None:
            table = self.trainer.precompute_reference()
            if args.save_strategy != "no" and self.trainer.is_world_process_zero():
                # A resumed attempt needs the table of the untrained policy (preference.run).
                with atomic_output(Path(args.output_dir) / REFERENCE_TABLE) as path:
                    save_file({"reference_logps": table.contiguous()}, str(path))


class _GuardHooks(TrainerCallback):
    """The guard's bookkeeping: each step's records start empty; under DeepSpeed, whose step runs
    inside accelerate's backward, the gradient check goes between DeepSpeed's backward and step."""

    def __init__(self, trainer: SherlockTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = self.trainer
        if trainer.is_deepspeed_enabled:
            accelerator = trainer.accelerator
            accelerator.deepspeed_engine_wrapped = guarded_deepspeed_engine(
                accelerator.deepspeed_engine_wrapped,
                trainer.guard,
                step=lambda: trainer.state.global_step + 1,
                records=trainer._records_of_step,
                device=trainer._device,
            )

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._step_records = []
        self.trainer.guard.begin_step()
