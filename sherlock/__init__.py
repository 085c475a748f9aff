"""The Sherlock workflow's library; the rules call it through ``workflow_scripts/``.

Subpackages, one feature each: ``data`` (records, formats, prompts), ``embedded`` (the tiny model
and synthetic data), ``generation`` (backends, self-correction), ``sft`` (Stage I),
``perturbation`` (perturbed continuations, Stages II and III), ``preference`` (the Sherlock
objective and trainer), ``online`` (Stage III data), ``evaluation``, ``report`` and ``runtime``
(atomic outputs, resumable jobs, GPU claims). ``config`` checks a run's config before any job.
"""
