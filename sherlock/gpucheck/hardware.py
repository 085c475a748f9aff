"""Accelerators' published peak rates: dense bf16 tensor throughput and memory bandwidth.

Model-FLOP utilisation is measured against the peak of the GPU found (by its name); an estimate
without a GPU assumes the one named (``--gpu``; default the A100 80GB of the paper's node).
Figures are the vendors' data-sheet values, without sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accelerator:
    name: str
    bf16_tflops: float  # dense
    memory_tb_s: float
    memory_gib: float


# Longest names first: the first whose key the device name contains wins.
KNOWN = (
    Accelerator("H100 PCIe", 756.0, 2.0, 80),
    Accelerator("H100 NVL", 835.0, 3.9, 94),
    Accelerator("H200", 989.0, 4.8, 141),
    Accelerator("H100", 989.0, 3.35, 80),
    Accelerator("GH200", 989.0, 4.0, 96),
    Accelerator("B200", 2250.0, 8.0, 180),
    Accelerator("A100 40GB", 312.0, 1.555, 40),
    Accelerator("A100", 312.0, 2.039, 80),
    Accelerator("L40S", 362.0, 0.864, 48),
    Accelerator("L4", 121.0, 0.3, 24),
)
DEFAULT = "A100"


def accelerator(name: str) -> Accelerator | None:
    """The known accelerator whose name ``name`` contains (case and dashes ignored), or None."""
    wanted = name.upper().replace("-", " ")
    if "A100" in wanted and "40" in wanted:
        return KNOWN[6]
    return next((a for a in KNOWN if a.name.upper() in wanted), None)
