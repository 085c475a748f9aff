"""Parameters, FLOPs and training-state memory of a vision-language model, from its shape alone.

Pure Python, exact counts of transformers' modules (tested against the models themselves):

- A matrix product of an (m × k) input by a (k × n) weight costs 2·m·k·n FLOPs: a linear layer
  with P weights costs 2·P FLOPs per token it reads (biases, norms, activations: not counted).
- Attention over a query length q and key length k costs 4·q·k·heads·head_dim FLOPs forward
  (scores and weighted sum), counted over the full square even when causal, as Megatron-LM's and
  PaLM's model-FLOP utilisation and torch's FLOP counter count it.
- Mllama: text tokens attend, in each cross-attention layer, to the image's vision states (all
  ``max_tiles`` tiles, padded ones included, as the model runs them); their key/value
  projections run over those states once per sequence. The vision encoder runs over
  ``max_tiles`` tiles of ``(image_size/patch)² + 1`` patches each, padded to a multiple of 8.
- Qwen2-VL / Qwen2.5-VL: an image of h × w patches puts h·w/merge² tokens into the text; the
  tower's blocks attend over the whole image (Qwen2-VL, and Qwen2.5-VL's ``full_layers``) or
  within windows of ``window`` patches a side (Qwen2.5-VL's other blocks).
- The LM head runs over the target tokens only (the trainer's ``logits_to_keep``); the rotary
  angles cost 2·(head_dim/2) per position and axis (Qwen2-VL's multimodal rotary: 3 axes).

Training (model FLOPs, what utilisation is measured against): forward F; backward 2·F for
every part from the first trainable parameter on (gradients of activations and of weights);
frozen parts before it (a frozen vision tower and projector) get no backward. LoRA: the frozen
base weights still pass gradients back (1·F), the adapters cost 2·P_lora per token forward and
4·P_lora backward. Gradient checkpointing recomputes the forward (hardware FLOPs, not counted
here: it lowers the utilisation measured instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sherlock.gpucheck.architectures import ModelShape, TextShape, VisionShape

# ---------------------------------------------------------------------------------- parameters


def _attention_weights(t: TextShape) -> tuple[int, int]:
    """(q + o weights, k + v weights) of one attention block of the decoder."""
    q_width = t.heads * t.head_dim
    return 2 * t.hidden * q_width, 2 * t.hidden * t.kv_heads * t.head_dim


def _mlp_weights(t: TextShape) -> int:
    return 3 * t.hidden * t.intermediate


def text_parameters(t: TextShape) -> int:
    """Every parameter of the decoder: embeddings, layers, final norm and (untied) LM head."""
    qo, kv = _attention_weights(t)
    bias = t.head_dim * (t.heads + 2 * t.kv_heads) if t.qkv_bias else 0
    layer = qo + kv + bias + _mlp_weights(t) + 2 * t.hidden
    # A cross-attention layer has no qkv bias, but q/k norms and two gates.
    cross = qo + kv + 2 * t.head_dim + 2 + _mlp_weights(t) + 2 * t.hidden
    self_layers = t.layers - t.cross_layers
    head = 0 if t.tied else t.vocab * t.hidden
    return t.embed_rows * t.hidden + self_layers * layer + t.cross_layers * cross + t.hidden + head


def _mllama_patches(v: VisionShape) -> int:
    """Positions per tile: the patches and a class token."""
    return (v.image_size // v.patch) ** 2 + 1


def vision_parameters(v: VisionShape) -> tuple[int, int]:
    """(vision tower, projector) parameters."""
    h, ff = v.hidden, v.intermediate
    if v.family == "mllama":
        positions = _mllama_patches(v)
        ratios = v.aspect_ratios + 1
        layer = 4 * h * h + 2 * h * ff + ff + h + 4 * h
        tower = (
            h  # class embedding
            + 3 * v.patch**2 * h  # patch embedding
            + 1
            + positions * h
            + ratios * v.max_tiles * positions * h  # gated positions
            + 2 * (1 + ratios * v.max_tiles * h)  # pre- and post-tile embeddings
            + 4 * h  # layernorm_pre, layernorm_post
            + v.layers * layer
            + v.global_layers * (layer + 2)
        )
        return tower, v.output_dim * v.out + v.out
    patch_embed = 3 * v.temporal_patch * v.patch**2 * h
    attention = 3 * h * h + 3 * h + h * h + h
    if v.family == "qwen2_vl":
        block = attention + 2 * h * ff + ff + h + 4 * h  # LayerNorms with biases
        merger_norm = 2 * h
    else:  # qwen2_5_vl: SwiGLU with biases, RMSNorms
        block = attention + 3 * h * ff + 2 * ff + h + 2 * h
        merger_norm = h
    merged = h * v.merge**2
    projector = merger_norm + merged * merged + merged + merged * v.out + v.out
    return patch_embed + v.layers * block, projector


@dataclass(frozen=True)
class Parameters:
    vision: int
    projector: int
    language: int

    @property
    def total(self) -> int:
        return self.vision + self.projector + self.language


def parameters(shape: ModelShape) -> Parameters:
    tower, projector = vision_parameters(shape.vision) if shape.vision else (0, 0)
    return Parameters(tower, projector, text_parameters(shape.text))


LORA_ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_targets(target: str | list[str] | None) -> tuple[str, ...]:
    """LLaMA-Factory's ``lora_target``: ``all`` (every linear layer of the language model but
    the LM head) or module names, comma-separated or a list."""
    if target is None or target == "all":
        return LORA_ALL
    names = target if isinstance(target, list) else str(target).split(",")
    return tuple(name.strip() for name in names if name.strip())


def lora_parameters(t: TextShape, rank: int, target: str | list[str] | None = "all") -> int:
    """Adapter parameters: rank·(in + out) for each targeted linear layer of the decoder."""
    q_width, kv_width = t.heads * t.head_dim, t.kv_heads * t.head_dim
    sizes = {
        "q_proj": (t.hidden, q_width),
        "k_proj": (t.hidden, kv_width),
        "v_proj": (t.hidden, kv_width),
        "o_proj": (q_width, t.hidden),
        "gate_proj": (t.hidden, t.intermediate),
        "up_proj": (t.hidden, t.intermediate),
        "down_proj": (t.intermediate, t.hidden),
    }
    names = lora_targets(target)
    per_layer = sum(rank * (i + o) for name, (i, o) in sizes.items() if name in names)
    return t.layers * per_layer


@dataclass(frozen=True)
class Training:
    """What a stage trains: the freeze keys and the fine-tuning type (LLaMA-Factory's names)."""

    freeze_vision: bool = False
    freeze_projector: bool = False
    freeze_language: bool = False
    lora_rank: int | None = None  # None: full fine-tuning
    lora_target: str | list[str] | None = "all"

    @property
    def lora(self) -> bool:
        return self.lora_rank is not None


def trainable_parameters(shape: ModelShape, training: Training) -> int:
    """Parameters that get gradients and optimizer state. LoRA trains its adapters only (the
    vision tower stays as the freeze keys say)."""
    p = parameters(shape)
    vision = 0 if training.freeze_vision else p.vision
    projector = 0 if training.freeze_projector else p.projector
    if training.lora:
        adapters = lora_parameters(shape.text, training.lora_rank, training.lora_target)
        return vision + projector + adapters
    return vision + projector + (0 if training.freeze_language else p.language)


# -------------------------------------------------------------------------------------- FLOPs


def image_grid(v: VisionShape, max_pixels: int) -> tuple[int, int]:
    """Patches (rows, columns) of a square image at the largest size ``max_pixels`` allows,
    its sides a multiple of patch × merge (LLaMA-Factory's and the processor's rounding)."""
    factor = v.patch * v.merge
    side = max(factor, int(math.sqrt(max_pixels) // factor) * factor)
    return side // v.patch, side // v.patch


def image_text_tokens(shape: ModelShape, max_pixels: int) -> int:
    """Tokens an image puts into the text: Qwen's merged patches, Mllama's one ``<|image|>``."""
    v = shape.vision
    if v is None:
        return 0
    if v.family == "mllama":
        return 1
    rows, cols = image_grid(v, max_pixels)
    return rows * cols // v.merge**2


def cross_attention_tokens(shape: ModelShape) -> int:
    """Vision states each Mllama text token can attend to (0 for other families)."""
    v = shape.vision
    if v is None or v.family != "mllama":
        return 0
    return v.max_tiles * _mllama_patches(v)


def _window_squares(patches: int, window: int, merge: int) -> int:
    """Σ over the windows along one side of (patches in the window)²... per side, in patches."""
    merged, size = patches // merge, window // merge
    return sum((min(size, merged - start) * merge) ** 2 for start in range(0, merged, size))


def vision_flops(shape: ModelShape, max_pixels: int) -> tuple[int, int]:
    """Forward FLOPs over one image of (the vision tower, the projector)."""
    v = shape.vision
    if v is None:
        return 0, 0
    h, ff = v.hidden, v.intermediate
    if v.family == "mllama":
        positions = _mllama_patches(v)
        padded = positions + (-positions) % 8
        tokens = v.max_tiles * padded
        patches = v.max_tiles * (v.image_size // v.patch) ** 2
        layer = 2 * (4 * h * h + 2 * h * ff) * tokens + 4 * tokens * tokens * h
        conv = 2 * 3 * v.patch**2 * h * patches
        mask = 2 * tokens * tokens  # the padding mask is built as an outer product
        projector = 2 * v.output_dim * v.out * v.max_tiles * positions
        return conv + mask + (v.layers + v.global_layers) * layer, projector
    rows, cols = image_grid(v, max_pixels)
    n = rows * cols
    mlp = (2 if v.family == "qwen2_vl" else 3) * h * ff
    linear = 2 * (4 * h * h + mlp) * n
    full = 4 * n * n * h
    if v.family == "qwen2_vl":
        attention = v.layers * full
    else:
        windowed = (
            4
            * h
            * _window_squares(rows, v.window, v.merge)
            * _window_squares(cols, v.window, v.merge)
        )
        full_count = len(v.full_layers)
        attention = full_count * full + (v.layers - full_count) * windowed
    conv = 2 * 3 * v.temporal_patch * v.patch**2 * h * n
    merged = h * v.merge**2
    projector = 2 * (merged * merged + merged * v.out) * (n // v.merge**2)
    return conv + v.layers * linear + attention, projector


def vision_forward_flops(shape: ModelShape, max_pixels: int) -> int:
    """Forward FLOPs of the vision tower and projector over one image."""
    return sum(vision_flops(shape, max_pixels))


def text_forward_flops(shape: ModelShape, tokens: int, targets: int) -> int:
    """Forward FLOPs of the decoder over one sequence of ``tokens`` tokens whose last
    ``targets`` go through the LM head (Mllama: with its image's cross-attention)."""
    t = shape.text
    qo, kv = _attention_weights(t)
    mlp = _mlp_weights(t)
    width = t.heads * t.head_dim
    self_layer = 2 * (qo + kv + mlp) * tokens + 4 * tokens * tokens * width
    vision_tokens = cross_attention_tokens(shape)
    cross_layer = (
        2 * (qo + mlp) * tokens + 2 * kv * vision_tokens + 4 * tokens * vision_tokens * width
    )
    head = 2 * t.hidden * t.vocab * targets
    # The rotary angles: head_dim/2 frequencies times the positions, per position axis (Qwen's
    # multimodal rotary has three: time, height, width).
    axes = 3 if shape.model_type in ("qwen2_vl", "qwen2_5_vl") else 1
    rotary = 2 * axes * (t.head_dim // 2) * tokens
    return (t.layers - t.cross_layers) * self_layer + t.cross_layers * cross_layer + head + rotary


def lora_forward_flops(shape: ModelShape, training: Training, tokens: int) -> int:
    """Forward FLOPs of the LoRA adapters over ``tokens`` tokens (0 without LoRA)."""
    if not training.lora:
        return 0
    return 2 * lora_parameters(shape.text, training.lora_rank, training.lora_target) * tokens


def training_flops(
    shape: ModelShape,
    training: Training,
    tokens: int,
    targets: int,
    images: float,
    max_pixels: int,
) -> float:
    """Model FLOPs of one forward + backward over one sequence, with ``images`` passes of its
    image through the vision tower: 1 per sequence, or a fraction of one when a record's
    sequences share one pass (vision sharing)."""
    text = text_forward_flops(shape, tokens, targets)
    tower, projector = (images * f for f in vision_flops(shape, max_pixels))
    lora = lora_forward_flops(shape, training, tokens)
    vision_learns = not (training.freeze_vision and training.freeze_projector)
    if training.lora:
        text_backward = text + 2 * lora  # through the frozen weights, and the adapters'
    elif not training.freeze_language:
        text_backward = 2 * text
    else:
        text_backward = text if vision_learns else 0  # gradients pass back to the vision side
    if not training.freeze_vision:
        vision_backward = 2 * (tower + projector)
    elif not training.freeze_projector:
        vision_backward = 2 * projector
    else:
        vision_backward = 0
    return text + tower + projector + lora + text_backward + vision_backward


def decode_flops_per_token(shape: ModelShape, context: int) -> int:
    """Forward FLOPs of one generated token at ``context`` tokens of context (key/value cache;
    Mllama's cross-attention keys and values are cached at the prompt)."""
    t = shape.text
    qo, kv = _attention_weights(t)
    mlp = _mlp_weights(t)
    width = t.heads * t.head_dim
    vision_tokens = cross_attention_tokens(shape)
    self_layer = 2 * (qo + kv + mlp) + 4 * context * width
    cross_layer = 2 * (qo + mlp) + 4 * vision_tokens * width
    return (
        (t.layers - t.cross_layers) * self_layer
        + t.cross_layers * cross_layer
        + 2 * t.hidden * t.vocab
    )


def kv_cache_bytes(shape: ModelShape, context: int, bytes_per_value: int = 2) -> int:
    """Bytes of one sequence's key/value cache at ``context`` tokens (cross-attention's too)."""
    t = shape.text
    per_token = 2 * t.kv_heads * t.head_dim * bytes_per_value
    cross = t.cross_layers * per_token * cross_attention_tokens(shape)
    return (t.layers - t.cross_layers) * per_token * context + cross


# ------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class StateMemory:
    """Bytes per GPU of a training's weights, gradients and optimizer state (no activations)."""

    weights: int
    gradients: int
    optimizer: int
    optimizer_on_cpu: bool
    weights_on_cpu: bool

    @property
    def on_gpu(self) -> int:
        return (
            (0 if self.weights_on_cpu else self.weights)
            + self.gradients
            + (0 if self.optimizer_on_cpu else self.optimizer)
        )


def state_memory(
    total: int,
    trainable: int,
    gpus: int = 1,
    zero_stage: int = 0,
    offload_optimizer: bool = False,
    offload_parameters: bool = False,
    bytes_per_weight: int = 2,
) -> StateMemory:
    """Mixed-precision AdamW as DeepSpeed keeps it: bf16 weights and gradients, and per
    trainable parameter a float32 master copy and two moments (12 bytes). ZeRO-1 shards the
    optimizer state over the GPUs, ZeRO-2 the gradients too, ZeRO-3 the weights too."""
    weights = total * bytes_per_weight
    gradients = trainable * bytes_per_weight
    optimizer = trainable * 12
    if zero_stage >= 1:
        optimizer //= gpus
    if zero_stage >= 2:
        gradients //= gpus
    if zero_stage >= 3:
        weights //= gpus
    return StateMemory(weights, gradients, optimizer, offload_optimizer, offload_parameters)
