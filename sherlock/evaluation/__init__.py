"""Scoring the checkpoints: benchmark files (``benchmark_files``), one response against
an answer (``scoring``), and a checkpoint's direct answers and each self-correction turn scored
(``evaluate``).
"""
