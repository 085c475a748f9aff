"""What resumability costs: chunked generation and intermediate checkpoints against neither.

    .venv/bin/snakemake --cores all sft --directory /tmp/tiny     # R0, D_B and the SFT run files
    .venv/bin/python benchmarks/fault_tolerance_overhead.py --workdir /tmp/tiny --rounds 3

Side by side, alternating which goes first each round, in the built working directory:

* generation: R0 answering D_B (``build_sherlock_sft.py``) with progress saved every
  ``--chunk-size`` requests, and in one call without progress;
* training: the Sherlock-SFT LLaMA-Factory run with a checkpoint every ``--save-steps`` steps
  (optimizer included), and without intermediate checkpoints.

Prints the median wall time of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow_scripts"


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def generation_command(results: Path, out: Path, chunk_size: int | None) -> list[str]:
    command = [sys.executable, str(SCRIPTS / "build_sherlock_sft.py")]
    command += [
        "--model",
        str(results / "models" / "r0"),
        "--d-b",
        str(results / "data" / "D_B.json"),
    ]
    command += ["--batch-size", "32", "--max-new-tokens", "160", "--temperature", "0.7"]
    command += ["--top-p", "1.0", "--seed", "20251", "--output", str(out)]
    return command + (["--chunk-size", str(chunk_size)] if chunk_size else [])


def training_command(results: Path, scratch: Path, save_steps: int | None) -> list[str]:
    config = yaml.safe_load((results / "llamafactory" / "sft" / "train.yaml").read_text())
    config["output_dir"] = str(scratch / "model.partial")
    if save_steps:
        config.update(save_strategy="steps", save_steps=save_steps, save_total_limit=2)
    else:
        config.update(save_strategy="no")
        for key in ("save_steps", "save_total_limit"):
            config.pop(key, None)
    run = scratch / "train.yaml"
    run.write_text(yaml.safe_dump(config))
    return [sys.executable, str(SCRIPTS / "train_llamafactory.py"), "--yaml", str(run)] + [
        "--model-dir",
        str(scratch / "model"),
        "--no-resume",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True, help="where `sft` was built")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--save-steps", type=int, default=50)
    args = parser.parse_args()
    results = args.workdir / "results"
    samples: dict[str, list[float]] = {name: [] for name in ("chunked", "one call", "ckpt", "none")}
    for round_index in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            pairs = [
                ("chunked", generation_command(results, tmp_path / "a.json", args.chunk_size)),
                ("one call", generation_command(results, tmp_path / "b.json", None)),
            ]
            for name, command in pairs if round_index % 2 == 0 else pairs[::-1]:
                samples[name].append(timed(command, args.workdir))
            runs = []
            for name, steps in (("ckpt", args.save_steps), ("none", None)):
                scratch = tmp_path / name
                scratch.mkdir()
                runs.append((name, training_command(results, scratch, steps)))
            for name, command in runs if round_index % 2 == 0 else runs[::-1]:
                samples[name].append(timed(command, args.workdir))
        print(
            f"round {round_index + 1}: "
            + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in samples.items())
        )
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"generation, progress every {args.chunk_size}: {median['chunked']:.1f} s; one call: "
        f"{median['one call']:.1f} s; ratio {median['chunked'] / median['one call']:.3f}"
    )
    print(
        f"training, checkpoint every {args.save_steps} steps: {median['ckpt']:.1f} s; none: "
        f"{median['none']:.1f} s; ratio {median['ckpt'] / median['none']:.3f}"
    )


if __name__ == "__main__":
    main()
