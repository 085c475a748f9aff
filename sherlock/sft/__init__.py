"""Stage I: the run files of LLaMA-Factory's full SFT (R0 and Sherlock-SFT), and the
self-correction SFT data built from R0's own answers.
"""
