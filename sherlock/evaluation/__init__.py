"""Scoring the checkpoints: benchmark files (``benchmark_files``; VLMEvalKit's dataset TSVs read
and its prediction files written by ``vlmevalkit``; the configured ones resolved and checked by
``benchmark_config``), reading an answer out of a response as VLMEvalKit does and then some
(``answers``), one response against an answer (``scoring``), a checkpoint's direct answers and
each self-correction turn scored (``evaluate``), each benchmark's own metric (``metrics``; MME,
HallusionBench, POPE, AMBER and VSR in ``yes_no``, judged open answers in ``open_answers``), the
rows of a VLMEvalKit file it reads differently from us (``differences``) and the paper's
published averages (``published``).
"""
