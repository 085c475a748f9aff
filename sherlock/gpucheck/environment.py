"""Does this node run our stack? One verdict per check: ``ok``, ``warn`` (runs, but not as the
presets expect) or ``fail`` (a run of the config would break), each with what was found.

Checks: Python, torch and CUDA, the GPUs and their memory, bf16, flash attention (the
``flash_attn`` package, or torch's own flash kernel for scaled-dot-product attention), DeepSpeed
(when the config trains with it), the training stack (transformers, TRL, LLaMA-Factory, peft), and
the vLLM environment (when the config generates with vLLM: ``python.generate``, else
``.venv-vllm/bin/python``, must import vllm).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sherlock.gpucheck.hardware import accelerator

# What pyproject.toml pins for the training stack.
PINNED = {"transformers": "5.6.0", "trl": "0.24.0", "llamafactory": "0.9.5", "peft": "0.18.1"}


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str  # ok, warn, fail
    detail: str

    def line(self) -> str:
        return f"  [{self.status:4}] {self.name:22} {self.detail}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _uses_deepspeed(config: dict[str, Any]) -> bool:
    sections = [config["sft"]["common"], config["preference"]["common"]]
    sections += [config["sft"][r] for r in ("r0", "sherlock_sft")]
    sections += [config["preference"][r] for r in ("offline", "online")]
    return any(section.get("deepspeed") for section in sections)


def torch_verdicts(needs_gpu: bool) -> list[Verdict]:
    """torch, CUDA, the GPUs, bf16 and flash attention."""
    import torch

    out = [Verdict("torch", "ok", f"{torch.__version__} (CUDA build {torch.version.cuda})")]
    if not torch.cuda.is_available():
        status = "fail" if needs_gpu else "warn"
        out.append(Verdict("GPUs", status, "none visible: measuring at toy size on the CPU"))
        return out
    names = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        known = accelerator(props.name)
        peak = f", {known.bf16_tflops:g} TFLOP/s bf16 peak" if known else ", peak unknown"
        names.append(f"{index}: {props.name} {props.total_memory / 2**30:.0f} GiB{peak}")
    out.append(Verdict("GPUs", "ok", "; ".join(names)))
    bf16 = torch.cuda.is_bf16_supported()
    out.append(
        Verdict(
            "bf16",
            "ok" if bf16 else "fail",
            "supported" if bf16 else "not supported: the presets train in bf16",
        )
    )
    flash_attn = _version("flash_attn")
    try:
        from torch.backends.cuda import flash_sdp_enabled

        sdpa_flash = flash_sdp_enabled()
    except ImportError:
        sdpa_flash = False
    if flash_attn:
        out.append(Verdict("flash attention", "ok", f"flash_attn {flash_attn}"))
    elif sdpa_flash:
        out.append(
            Verdict(
                "flash attention",
                "ok",
                "torch's flash kernel for sdpa (no flash_attn package; not needed)",
            )
        )
    else:
        out.append(Verdict("flash attention", "warn", "neither flash_attn nor sdpa's flash kernel"))
    return out


def stack_verdicts() -> list[Verdict]:
    """The training stack's packages against the pins."""
    out = []
    for package, pin in PINNED.items():
        found = _version(package)
        if found is None:
            out.append(Verdict(package, "fail", f"not installed (pinned {pin})"))
        else:
            status = "ok" if found == pin else "warn"
            out.append(
                Verdict(package, status, found + ("" if found == pin else f" (pinned {pin})"))
            )
    return out


def deepspeed_verdict(config: dict[str, Any]) -> Verdict:
    found = _version("deepspeed")
    used = _uses_deepspeed(config)
    if found:
        return Verdict(
            "DeepSpeed", "ok", f"{found}" + (" (the config trains with it)" if used else "")
        )
    if used:
        return Verdict(
            "DeepSpeed",
            "fail",
            "not installed, and the config trains with it (pip install -e '.[deepspeed]')",
        )
    return Verdict("DeepSpeed", "ok", "not installed; the config does not use it")


def vllm_verdict(config: dict[str, Any], root: Path, timeout: float = 120) -> Verdict:
    """Whether the vLLM environment imports vllm (only asked when the config generates with it)."""
    if config["generation"]["backend"] != "vllm":
        return Verdict("vLLM environment", "ok", "not needed (generation.backend: transformers)")
    python = config["python"].get("generate") or str(root / ".venv-vllm" / "bin" / "python")
    python = python if os.path.isabs(python) else str(root / python)
    if not os.access(python, os.X_OK):
        return Verdict(
            "vLLM environment",
            "fail",
            f"{python} is missing (python3 -m venv .venv-vllm && "
            ".venv-vllm/bin/pip install -e '.[vllm]')",
        )
    try:
        result = subprocess.run(
            [
                python,
                "-c",
                "import vllm, torch; print(vllm.__version__, torch.__version__,"
                " torch.cuda.is_available())",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Verdict("vLLM environment", "fail", f"{python}: import vllm took over {timeout:g} s")
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return Verdict("vLLM environment", "fail", f"{python}: import vllm failed: {last}")
    version, torch_version, cuda = result.stdout.split()
    status = "ok" if cuda == "True" else "warn"
    return Verdict(
        "vLLM environment", status, f"vllm {version}, torch {torch_version}, GPU visible: {cuda}"
    )


def verdicts(config: dict[str, Any], root: Path, needs_gpu: bool) -> list[Verdict]:
    """Every check, in order."""
    out = [Verdict("Python", "ok", platform.python_version())]
    out += torch_verdicts(needs_gpu)
    out += stack_verdicts()
    out.append(deepspeed_verdict(config))
    out.append(vllm_verdict(config, root))
    return out
