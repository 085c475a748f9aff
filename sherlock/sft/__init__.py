"""Stage I: the run files of LLaMA-Factory's SFT (R0 and Sherlock-SFT, full or LoRA), the
self-correction SFT data built from R0's own answers, and the merged models of every LoRA stage
(``merge``: LLaMA-Factory's export).
"""
