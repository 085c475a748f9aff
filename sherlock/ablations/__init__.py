"""Ablations: runs that share their upstream stages (``stages``), the variants × seeds of an
ablation config (``runs``); their paired comparison is ``sherlock.evaluation.paired``."""
