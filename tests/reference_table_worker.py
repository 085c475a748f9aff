"""One process of tests/test_reference_sharing.py, started by torchrun (or alone).

    reference_table_worker.py MODEL PREFS OUT CUTOFF

Builds the Sherlock trainer on the preference file as the workflow does, then, in this process:
the length check at ``CUTOFF`` tokens (its error message, if any, goes to OUT/error<rank>.txt),
and the reference table of every record, then of all but the last (OUT/table.safetensors from
rank 0: ``table``, ``odd``). OUT/records<rank>.json lists the records this process encoded for
the first table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.preference.arguments import SherlockConfig
from sherlock.preference.records import PreferenceDataError, load_preferences
from sherlock.preference.trainer import PreferenceCollator, PreferenceDataset, SherlockTrainer
from sherlock.runtime.process_group import close_process_group

sys.path.insert(0, str(Path(__file__).parent))
from defaults import coefficients_of, perturbation  # noqa: E402

CONFIG = coefficients_of(perturbation({"recipe": "reference"}))


class CountingDataset(PreferenceDataset):
    """Records which records this process encodes."""

    encoded: list[int]

    def __getitem__(self, index: int) -> dict:
        self.encoded.append(index)
        return super().__getitem__(index)


def main() -> None:
    model_dir, prefs, out, cutoff = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    processor = AutoProcessor.from_pretrained(model_dir)
    args = SherlockConfig(
        output_dir=str(out / "trainer"),
        beta=0.1,
        beta_refine=0.025,
        dpo_coef=0.2,
        sc_coef=0.8,
        freeze_vision_tower=False,
        freeze_multi_modal_projector=False,
        freeze_language_model=False,
        nonfinite_steps="stop",
        precompute_ref_log_probs=True,
        per_device_eval_batch_size=2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
    )
    dataset = CountingDataset(
        load_preferences(prefs, "."), processor, load_prompt("refine"), CONFIG, cutoff
    )
    dataset.encoded = []
    trainer = SherlockTrainer(
        model=AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=dataset,
        data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
    )
    rank = args.process_index
    try:
        trainer.check_lengths()
    except PreferenceDataError as error:
        (out / f"error{rank}.txt").write_text(str(error))
    dataset.cutoff_len = None
    table = trainer.precompute_reference()
    (out / f"records{rank}.json").write_text(json.dumps(sorted(dataset.encoded)))
    # An odd count: one process repeats a record to stay in step; the repeat is not written.
    odd = PreferenceDataset(dataset.examples[:-1], processor, dataset.refine_template, CONFIG, None)
    trainer.train_dataset = odd
    odd_table = trainer.precompute_reference()
    if rank == 0:
        tables = {"table": table.contiguous(), "odd": odd_table.contiguous()}
        save_file(tables, str(out / "table.safetensors"))
    close_process_group()


if __name__ == "__main__":
    main()
