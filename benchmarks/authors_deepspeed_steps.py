"""Optimizer steps per nominal step in the authors' preference trainer, reproduced tiny on a CPU.

The authors' LLaMA-Factory fork (train/LLaMA-Factory/src/llamafactory/train/dpo/trainer.py in
DripNowhy/Sherlock) calls ``accelerator.backward`` on two refinement losses inside
``get_batch_loss_metrics`` and returns the DPO loss, which transformers' Trainer passes to
``accelerator.backward`` once more: three calls per micro-batch. Under DeepSpeed, accelerate
before 1.8 runs ``engine.step()`` after every call, and the engine counts a micro-step per call.
This script trains a one-layer model with transformers' Trainer under DeepSpeed exactly so
(``CALLS`` backward calls per micro-batch, gradient accumulation 4, cosine schedule) and prints,
per nominal step, the engine's micro-steps and optimizer steps, the scheduler's steps and the
learning rate in the optimizer. It needs the fork's pinned stack, in a venv of its own:

    python -m venv /tmp/ds && /tmp/ds/bin/pip install torch transformers==4.45.2 \
        accelerate==1.2.1 deepspeed==0.16.2
    DS_ACCELERATOR=cpu /tmp/ds/bin/python benchmarks/authors_deepspeed_steps.py 3 12 29500

(arguments: calls per micro-batch, nominal steps, a free port; ``ZERO=3`` for ZeRO stage 3).
Results: benchmarks/results/authors_deepspeed_steps.json; what they mean: docs/method.md §8.
"""

import json
import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")
for key, value in {
    "RANK": "0",
    "WORLD_SIZE": "1",
    "LOCAL_RANK": "0",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": sys.argv[3] if len(sys.argv) > 3 else "29500",
}.items():
    os.environ.setdefault(key, value)

import accelerate  # noqa: E402
import deepspeed  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

CALLS, NOMINAL = int(sys.argv[1]), int(sys.argv[2])
ACCUMULATION = 4
ZERO = int(os.environ.get("ZERO", "0"))


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        return self.linear(x)


class Inputs(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return NOMINAL * ACCUMULATION

    def __getitem__(self, index: int) -> dict:
        return {"x": torch.randn(8, generator=torch.Generator().manual_seed(index))}


class ForkLike(Trainer):
    """The fork's structure: CALLS − 1 backward calls inside the loss, one more by the Trainer."""

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        for extra in range(CALLS - 1):
            self.accelerator.backward(model(inputs["x"]).pow(2).mean() * (extra + 2))
        return model(inputs["x"]).pow(2).mean()


ROWS: list[dict] = []


class Record(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        engine = trainer.model_wrapped
        ROWS.append(
            {
                "nominal_step": state.global_step,
                "engine_micro_steps": engine.micro_steps,
                "optimizer_steps": engine.global_steps,
                "scheduler_steps": trainer.lr_scheduler.last_epoch,
                "lr_in_optimizer": engine.optimizer.param_groups[0]["lr"],
            }
        )


config = {
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
    "fp16": {"enabled": False},
    "bf16": {"enabled": False},
    "zero_optimization": {"stage": ZERO},
}
arguments = TrainingArguments(
    output_dir="/tmp/authors_deepspeed_steps",
    per_device_train_batch_size=1,
    gradient_accumulation_steps=ACCUMULATION,
    learning_rate=1e-3,
    lr_scheduler_type="cosine",
    warmup_ratio=0.0,
    num_train_epochs=1,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    deepspeed=config,
    remove_unused_columns=False,
    seed=42,
)
trainer = ForkLike(
    model=Tiny(),
    args=arguments,
    train_dataset=Inputs(),
    data_collator=lambda items: {"x": torch.stack([item["x"] for item in items])},
    callbacks=[Record()],
)
trainer.train()
print(
    "RESULT "
    + json.dumps(
        {
            "versions": {
                "accelerate": accelerate.__version__,
                "deepspeed": deepspeed.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
            "zero_stage": ZERO,
            "backward_calls_per_micro_batch": CALLS,
            "gradient_accumulation": ACCUMULATION,
            "nominal_steps": NOMINAL,
            "rows": ROWS,
        }
    )
)
