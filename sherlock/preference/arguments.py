"""The Sherlock trainer's arguments: TRL's ``DPOConfig`` plus the objective's own knobs.

TRL users find β (``beta``), the reference pass (``precompute_ref_log_probs``,
``precompute_ref_batch_size``), the length limit (``max_length``) and the weight of the chosen
targets' NLL (``rpo_alpha``) where TRL keeps them. Our config (and every rendered run file)
names them as LLaMA-Factory does; ``CONFIG_NAMES`` maps those names onto these fields, here
and nowhere else. No value of ours has a default in Python: config/config.yaml writes each once
(``None`` below means "must be given").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import DPOConfig

from sherlock.preference.lora import LoraSettings

# config / run-file key → argument (LLaMA-Factory's names → TRL's and ours).
CONFIG_NAMES = {
    "pref_beta": "beta",
    "pref_beta_refine": "beta_refine",
    "pref_ftx": "rpo_alpha",
    "cutoff_len": "max_length",
}
_REQUIRED = (
    "beta_refine",
    "dpo_coef",
    "sc_coef",
    "freeze_vision_tower",
    "freeze_multi_modal_projector",
    "freeze_language_model",
    "nonfinite_steps",
)


@dataclass
class SherlockConfig(DPOConfig):
    """``DPOConfig`` with the Sherlock objective's coefficients (METHOD: L = dpo_coef·L_dpo +
    sc_coef·(L_ref,l + L_ref,w) + rpo_alpha·NLL)."""

    beta_refine: float | None = field(
        default=None, metadata={"help": "β_r of the self-correction terms (reference recipe)"}
    )
    dpo_coef: float | None = field(default=None, metadata={"help": "weight of L_dpo"})
    sc_coef: float | None = field(default=None, metadata={"help": "weight of L_ref,l + L_ref,w"})
    # LLaMA-Factory's names and meaning (sherlock.preference.freezing).
    freeze_vision_tower: bool | None = field(
        default=None, metadata={"help": "leave the vision tower untrained"}
    )
    freeze_multi_modal_projector: bool | None = field(
        default=None, metadata={"help": "leave the multimodal projector untrained"}
    )
    freeze_language_model: bool | None = field(
        default=None, metadata={"help": "leave the language model untrained"}
    )
    # LLaMA-Factory's names and meaning (sherlock.preference.lora). A run file without them
    # trains in full (those of earlier versions, and every full run: the rules write the LoRA
    # keys only for a LoRA run).
    finetuning_type: str = field(
        default="full", metadata={"help": "full, or lora: only a LoRA adapter trains"}
    )
    lora_rank: int | None = field(default=None, metadata={"help": "LoRA rank r"})
    lora_alpha: float | None = field(
        default=None, metadata={"help": "LoRA scale α; None: 2 × lora_rank (LLaMA-Factory's)"}
    )
    lora_dropout: float | None = field(default=None, metadata={"help": "dropout on LoRA input"})
    lora_target: str | None = field(
        default=None, metadata={"help": "all, or a comma list of module names"}
    )
    share_vision_features: bool = field(
        default=True,
        metadata={
            "help": "run each record's image through the vision tower once per forward pass, "
            "for all its sequences (Qwen2-VL, Qwen2.5-VL, Mllama; others run it per sequence)"
        },
    )
    nonfinite_steps: str | None = field(
        default=None,
        metadata={
            "help": "a step whose loss or gradient is not finite: stop the run (naming the step, "
            "its records and the last good checkpoint) or skip the batch "
            "(sherlock.runtime.finite_guard)"
        },
    )
    remove_unused_columns: bool = False

    def __post_init__(self) -> None:
        missing = [name for name in _REQUIRED if getattr(self, name) is None]
        if self.finetuning_type not in ("full", "lora"):
            raise ValueError(f"finetuning_type {self.finetuning_type!r}: full or lora")
        if self.finetuning_type == "lora":
            lora_keys = ("lora_rank", "lora_dropout", "lora_target")
            missing += [name for name in lora_keys if getattr(self, name) is None]
        if missing:
            raise ValueError(f"the training arguments lack {', '.join(missing)}")
        super().__post_init__()

    @property
    def lora(self) -> LoraSettings | None:
        """The LoRA settings of a LoRA run, else None."""
        if self.finetuning_type != "lora":
            return None
        alpha = self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank
        return LoraSettings(self.lora_rank, alpha, self.lora_dropout, self.lora_target)

    @property
    def nll_coef(self) -> float:
        """γ, the coefficient of the chosen targets' mean-token NLL (0 when unset)."""
        return self.rpo_alpha or 0.0


def argument_names(values: dict[str, Any]) -> dict[str, Any]:
    """Run-file keys under the arguments' names (a key given both ways is refused)."""
    renamed: dict[str, Any] = {}
    for key, value in values.items():
        name = CONFIG_NAMES.get(key, key)
        if name in renamed:
            raise ValueError(f"the run file sets {name} twice (as {key} and as {name})")
        renamed[name] = value
    return renamed
