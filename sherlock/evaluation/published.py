"""The paper's published averages over its eight benchmarks (docs/method.md §9), per stage of
the method on Llama-3.2-Vision-11B: (direct, after self-correction); None where not reported.

Only the averages are published in this form; they are shown beside ours when the config asks
(``evaluation.compare_with_paper``, on in the paper preset).
"""

from __future__ import annotations

PAPER_AVERAGES: dict[str, tuple[float, float | None]] = {
    "base": (58.7, None),  # Llama-3.2V-11B-Instruct
    "sft": (62.2, 63.0),
    "offline": (63.2, 64.4),
    "iter1": (63.9, 65.1),
    "iter2": (64.1, 65.4),
}
PAPER_BENCHMARKS = (
    "MMBench_DEV_EN_V11",
    "MMStar",
    "MMMU_DEV_VAL",
    "MathVista_MINI",
    "HallusionBench",
    "AI2D_TEST",
    "MMVet",
    "MME",
)
