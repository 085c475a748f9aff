"""Sherlock preference training (Stages II and III): preference records
(``records``), the per-record coefficients β and β_sc (``coefficients``), one record as the ten
(context, target) sequences (``encoding``), the objective as a pure function of log-probabilities
(``losses``), our ``transformers.Trainer`` subclass (``trainer``), LoRA through peft (``lora``) and
the straight-line run that a rule launches (``run``).
"""
