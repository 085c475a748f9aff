"""Scoring the checkpoints: benchmark files (``benchmark_files``; VLMEvalKit's dataset TSVs read
and its prediction files written by ``vlmevalkit``; the configured ones resolved and checked by
``benchmark_config``), one response against an answer (``scoring``), a checkpoint's direct
answers and each self-correction turn scored (``evaluate``), each benchmark's own metric
(``metrics``; MME and HallusionBench in ``yes_no``, judged open answers in ``open_answers``) and
the paper's published averages (``published``).
"""
