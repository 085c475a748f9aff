"""The data every stage reads and writes: the LLaVA-CoT response format (four tagged stages),
source records and their validation, image checks, seeded splits, LLaMA-Factory's ShareGPT rows,
the published prompts (``prompts/*.txt``) and the one place that renders a prompt for a model.
"""
