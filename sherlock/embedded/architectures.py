"""The tiny model's architectures and the LLaMA-Factory template each trains with.

Kept free of heavy imports: the config check reads it when the workflow is parsed.
"""

TEMPLATES: dict[str, str] = {"qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_vl", "mllama": "mllama"}
ARCHITECTURES: tuple[str, ...] = tuple(TEMPLATES)
