"""Sharded training, many times over: does every two-process run agree with one process?

    .venv/bin/python benchmarks/sharded_stability.py --workdir /tmp/stability --runs 20

For each tiny model (Qwen2-VL and Llama-3.2-Vision, built here, nothing downloaded) and each
sharded backend (DeepSpeed ZeRO-3 with config/deepspeed/ds_z3.json, PyTorch FSDP2 with
config/fsdp/fsdp2.json), the Sherlock trainer runs ``--runs`` times with two CPU processes
(``torchrun``, gloo), one record per process per step, and once with one process and two
records per step: the same batches, so the same mathematics. Four records, two epochs: four
optimizer steps. Each two-process run is then one of

- equal: every logged loss within a relative 1e-4 of the one-process run's, and every weight of
  the saved model within 4e-5 (absolute) of the one-process model's: 1 % of what four AdamW
  steps at learning rate 1e-3 can move a weight (AdamW moves each by at most about lr a step);
- unequal: finite, but outside that tolerance;
- non-finite: a loss or weight not finite, or the run stopped by the guard against non-finite
  steps (``nonfinite_steps: stop``);
- failed: any other error.

The results (counts, the largest deviations, the time per run) go to
benchmarks/results/sharded_stability.{json,md}. Everything runs on the CPU; each run is a few
seconds of training plus process start-up (and, for DeepSpeed's first run in a fresh
TORCH_EXTENSIONS_DIR, the build of its CPU communication op).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BACKENDS = {
    "zero3": {"deepspeed": str(ROOT / "config" / "deepspeed" / "ds_z3.json")},
    "fsdp": {"fsdp": "full_shard auto_wrap", "fsdp_config": str(ROOT / "config/fsdp/fsdp2.json")},
}
ARCHITECTURES = ("qwen2_vl", "mllama")
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 4e-5
RECORDS, EPOCHS, SEED = 4, 2, 5


def build_inputs(workdir: Path) -> dict[str, Path]:
    """Synthetic data, the two tiny models and four preference records (once per workdir)."""
    from sherlock.data.records import strip_image_token
    from sherlock.embedded.synthetic import build_synthetic_dataset
    from sherlock.embedded.tiny_model import build_tiny_vlm, corpus_from_jsonl
    from sherlock.perturbation.recipes import truncate
    from sherlock.preference.records import PreferenceExample, preference_row

    synthetic = workdir / "synthetic"
    if not (synthetic / "train.jsonl").is_file():
        build_synthetic_dataset(synthetic, n_train=40, n_test=12, image_size=56, seed=7)
    corpus = corpus_from_jsonl([synthetic / "train.jsonl"])
    paths = {"prefs": workdir / "prefs.json"}
    for architecture in ARCHITECTURES:
        folder = workdir / architecture
        if not (folder / "config.json").is_file():
            build_tiny_vlm(folder, corpus, seed=7, image_size=56, architecture=architecture)
        paths[architecture] = folder
    lines = (synthetic / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = []
    for n, record in enumerate(json.loads(line) for line in lines[:RECORDS]):
        chosen = record["conversations"][1]["value"]
        # chosen = Y*, rejected = the same head with another reasoning and conclusion
        rejected = (
            chosen[: chosen.index("<REASONING>")]
            + "<REASONING>I cannot tell.</REASONING><CONCLUSION>nothing</CONCLUSION>"
        )
        example = PreferenceExample(
            id=record["id"],
            image=str(synthetic / record["image"]),
            question=strip_image_token(record["conversations"][0]["value"]),
            chosen=chosen,
            rejected=rejected,
            prefix=truncate(chosen, n % 3, "reference"),
            prefix_l=truncate(rejected, n % 3, "reference"),
            truncation=n % 3,
            noise_level=1.0 if n % 3 == 2 else 0.2,
        )
        rows.append(preference_row(example))
    paths["prefs"].write_text(json.dumps(rows), encoding="utf-8")
    return paths


def run_settings(model: Path, prefs: Path, out: Path, per_device: int) -> dict[str, Any]:
    """A run file of the embedded default's objective (config/config.yaml), tiny schedule."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    common = config["preference"]["common"]
    keys = ("pref_beta", "pref_beta_refine", "dpo_coef", "sc_coef", "pref_ftx", "bf16")
    keys += ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model")
    return {
        **{key: common[key] for key in keys},
        "nonfinite_steps": "stop",
        "perturbation": config["perturbation"],
        "model_name_or_path": str(model),
        "dataset": str(prefs),
        "output_dir": str(out) + ".partial",
        "per_device_train_batch_size": per_device,
        "num_train_epochs": EPOCHS,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": SEED,
        "precompute_ref_log_probs": True,
    }


def train(settings: dict[str, Any], out: Path, processes: int, timeout: int) -> dict[str, Any]:
    """One run of workflow_scripts/train_sherlock.py; its exit, losses, weights and time."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run_file = out.parent / f"{out.name}.yaml"
    run_file.write_text(yaml.safe_dump(settings), encoding="utf-8")
    script = [str(ROOT / "workflow_scripts" / "train_sherlock.py"), str(run_file)]
    script += ["--model-dir", str(out), "--no-resume"]
    if processes > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        command = [str(torchrun), "--standalone", f"--nproc_per_node={processes}", *script]
    else:
        command = [sys.executable, *script]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=environ
        )
        code, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as error:
        code, log = -1, f"timeout after {timeout} s: {error}"
    result: dict[str, Any] = {"exit": code, "seconds": round(time.perf_counter() - start, 1)}
    if code == 0:
        summary = json.loads((out / "sherlock_training.json").read_text(encoding="utf-8"))
        result["losses"] = [e["loss"] for e in summary["log_history"] if "loss" in e]
        result["weights"] = load_file(str(out / "model.safetensors"))
    else:
        result["guard"] = "is not finite; records of the batch" in log
        result["log_tail"] = log[-3000:]
    return result


def outcome(run: dict[str, Any], one: dict[str, Any]) -> tuple[str, float, float]:
    """(equal | unequal | non-finite | failed, largest relative loss gap, largest weight gap)."""
    if run["exit"] != 0:
        return ("non-finite" if run.get("guard") else "failed"), math.nan, math.nan
    losses, weights = run["losses"], run["weights"]
    if not all(math.isfinite(x) for x in losses) or not all(
        bool(t.isfinite().all()) for t in weights.values()
    ):
        return "non-finite", math.nan, math.nan
    if len(losses) != len(one["losses"]) or weights.keys() != one["weights"].keys():
        return "unequal", math.inf, math.inf
    pairs = zip(losses, one["losses"], strict=True)
    loss_gap = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)
    weight_gap = max(
        float((weights[k].float() - one["weights"][k].float()).abs().max()) for k in weights
    )
    equal = loss_gap <= LOSS_RTOL and weight_gap <= WEIGHT_ATOL
    return ("equal" if equal else "unequal"), loss_gap, weight_gap


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Sharded training on CPU: {report['runs']} two-process runs per backend and model",
        "",
        f"Equal: every logged loss within a relative {LOSS_RTOL:g} of one process's, every "
        f"weight within {WEIGHT_ATOL:g}. {RECORDS} records, {EPOCHS} epochs (4 optimizer "
        f"steps), torch gloo on {report['machine']}.",
        "",
        "| model | backend | equal | unequal | non-finite | failed | largest loss gap "
        "| largest weight gap | s per run (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        counts = row["counts"]
        lines.append(
            f"| {row['model']} | {row['backend']} | {counts['equal']} | {counts['unequal']} "
            f"| {counts['non-finite']} | {counts['failed']} | {row['loss_gap']:.2e} "
            f"| {row['weight_gap']:.2e} | {row['median_seconds']:.0f} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run")
    parser.add_argument("--output", type=Path, default=RESULTS / "sharded_stability")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    # DeepSpeed builds its CPU communication op once into this folder, not a shared one.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(args.workdir / "torch_extensions"))
    inputs = build_inputs(args.workdir)
    rows = []
    for model in args.models:
        one_out = args.workdir / "runs" / f"{model}-one"
        one = train(run_settings(inputs[model], inputs["prefs"], one_out, 2), one_out, 1, 900)
        if one["exit"] != 0:
            raise SystemExit(f"the one-process run of {model} failed:\n{one['log_tail']}")
        for backend in args.backends:
            counts = {"equal": 0, "unequal": 0, "non-finite": 0, "failed": 0}
            loss_gaps, weight_gaps, seconds, notes = [], [], [], []
            for n in range(args.runs):
                out = args.workdir / "runs" / f"{model}-{backend}-{n}"
                settings = {**run_settings(inputs[model], inputs["prefs"], out, 1)}
                settings.update(BACKENDS[backend])
                run = train(settings, out, 2, args.timeout)
                kind, loss_gap, weight_gap = outcome(run, one)
                counts[kind] += 1
                seconds.append(run["seconds"])
                if math.isfinite(loss_gap):
                    loss_gaps.append(loss_gap)
                    weight_gaps.append(weight_gap)
                if kind in ("failed", "non-finite") and len(notes) < 3:
                    notes.append(run.get("log_tail", "")[-600:])
                print(f"{model} {backend} run {n + 1}: {kind} ({run['seconds']} s)", flush=True)
            rows.append(
                {
                    "model": model,
                    "backend": backend,
                    "counts": counts,
                    "loss_gap": max(loss_gaps, default=math.nan),
                    "weight_gap": max(weight_gaps, default=math.nan),
                    "median_seconds": sorted(seconds)[len(seconds) // 2],
                    "notes": notes,
                }
            )
    report = {
        "runs": args.runs,
        "loss_rtol": LOSS_RTOL,
        "weight_atol": WEIGHT_ATOL,
        "machine": f"{os.cpu_count()} CPU cores",
        "command": "benchmarks/sharded_stability.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    args.output.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
