"""``sherlock-gpu-check``: prove a node and price a preset in GPU-hours before a run.

Pure Python (imported by the Snakefile at parse time, no torch): where a base model's
architecture comes from (``architectures``), its parameters and FLOPs (``flops``), the work of
every stage of a config (``workload``), accelerators' peak rates (``hardware``) and the price
table (``price``). With torch: the environment's verdicts (``environment``), models built at real
or toy size with random weights (``models``), the measured steps and generation (``measure``),
and the command itself (``cli``).
"""
