"""Does Sherlock's training help? The demo (config/presets/demo.yaml) built for several seeds and
scored on the synthetic test stream, with the method's signature checked over the seeds.

    .venv/bin/python benchmarks/demo_study.py --workdir /tmp/demo_study
    .venv/bin/python benchmarks/demo_study.py --workdir /tmp/demo_study --seeds 11 12 13 \
        --n-test 1000 --out benchmarks/results/demo_study

Each seed is one full build of the demo's default target (perception, Stages I-III, every
checkpoint evaluated) in ``<workdir>/seed<S>``, with ``synthetic.heldout: test`` and ``n_test``
held-out questions: the demo's settings were chosen on the validation stream, and the test
stream is read here only. A build is an ordinary Snakemake run, so an interrupted study resumes
where it stopped (finished seeds cost nothing). Writes ``<out>.md`` (tables), ``<out>.json`` and
``<out>.png`` (score by turn per checkpoint, mean ± spread over the seeds, with the blind
baselines).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean, stdev

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from sherlock.evaluation.effect import run_scores  # noqa: E402
from sherlock.evaluation.seed_study import (  # noqa: E402
    baseline_table,
    goal_table,
    markdown_table,
    score_table,
)
from sherlock.evaluation.signature import checks_as_rows, over_runs, signature_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "config" / "presets" / "demo.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def build_seed(
    seed: int, workdir: Path, n_test: int, cores: int, max_items: int | None = None
) -> float:
    """Build (or finish) one seed's demo; its wall time in seconds (0-ish when already built).
    ``max_items``: score only the first that many held-out questions (the data stay the same, so
    changing it re-runs the evaluation only)."""
    run_dir = workdir / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    overlay = run_dir / "study.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "seed": seed,
                "results_dir": str(run_dir / "results"),
                "synthetic": {"heldout": "test", "n_test": n_test},
                # the study's own page is not part of a seed's build
                "evaluation": {"max_items": max_items, "seed_study": None},
            }
        )
    )
    log = run_dir / "snakemake.log"
    start = time.perf_counter()
    with log.open("a") as handle:
        subprocess.run(
            [*SNAKEMAKE, "--cores", str(cores), "--configfile", str(PRESET), str(overlay)],
            cwd=ROOT,
            check=True,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return time.perf_counter() - start


def job_seconds(seed: int, workdir: Path) -> float:
    """The seconds one seed's jobs took, summed from their Snakemake benchmark files: unlike the
    wall time of one invocation, it survives a study that resumed."""
    folder = workdir / f"seed{seed}" / "results" / "benchmarks"
    return sum(pd.read_csv(path, sep="\t")["s"].iloc[-1] for path in folder.glob("*.tsv"))


def read_seed(seed: int, workdir: Path) -> tuple[pd.DataFrame, dict[int, float]]:
    """One seed's tidy scores (eval/accuracy.json) and its online acceptance rates."""
    results = workdir / f"seed{seed}" / "results"
    frame = pd.read_json(results / "eval" / "accuracy.json", orient="records")
    frame["seed"] = seed
    acceptance = {}
    for path in sorted((results / "online").glob("iter*/chosen_summary.yaml")):
        k = int(path.parent.name.removeprefix("iter"))
        acceptance[k] = float(yaml.safe_load(path.read_text())["acceptance_rate"])
    return frame, acceptance


def _spread(values: list[float]) -> float:
    return stdev(values) if len(values) > 1 else 0.0


def summarise(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per checkpoint and turn: accuracy mean and spread over seeds (percent), every seed's
    value, and the mean number of distinct answers."""
    frame = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(frame["checkpoint"]))
    rows = []
    for (checkpoint, turn), group in frame.groupby(["checkpoint", "turn"], sort=False):
        values = list(group["percent"])
        rows.append(
            {
                "checkpoint": checkpoint,
                "turn": int(turn),
                "mean": mean(values),
                "spread": _spread(values),
                "seeds": values,
                "distinct_answers": mean(group["distinct_answers"]),
                "items": int(group["items"].iloc[0]),
            }
        )
    table = pd.DataFrame(rows)
    table["_order"] = table["checkpoint"].map({c: i for i, c in enumerate(order)})
    return table.sort_values(["_order", "turn"]).drop(columns="_order").reset_index(drop=True)


def markdown(table: pd.DataFrame, baselines: dict[str, float], checks: list[dict]) -> str:
    """The study's tables in Markdown: score by turn, distinct answers, baselines, goals."""
    goals = goal_table(checks)
    goals["met"] = goals["met"].replace({"no": "**no**"})
    tables = (score_table(table), baseline_table(baselines), goals)
    return "\n\n".join(markdown_table(frame) for frame in tables) + "\n"


def figure(table: pd.DataFrame, baselines: dict[str, float], path: Path) -> None:
    """Score by turn per checkpoint (mean ± spread over seeds), the blind baselines dashed."""
    fig, axis = plt.subplots(figsize=(6.4, 4.0))
    for checkpoint, rows in table.groupby("checkpoint", sort=False):
        axis.errorbar(
            rows["turn"],
            rows["mean"],
            yerr=rows["spread"],
            marker="o",
            capsize=3,
            label=checkpoint,
        )
    for (name, value), style in zip(baselines.items(), (":", "--"), strict=True):
        axis.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    turns = sorted(table["turn"].unique())
    axis.set_xticks(turns, ["direct" if t == 0 else f"turn {t}" for t in turns])
    axis.set_ylabel("accuracy on the test stream (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="one folder per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--n-test", type=int, default=1000, help="held-out test questions")
    parser.add_argument(
        "--max-items", type=int, default=None, help="score only the first N test questions"
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--no-build", action="store_true", help="only summarise the seeds already built"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "demo_study",
        help="path prefix of the .md, .json and .png written",
    )
    args = parser.parse_args()
    walls = {}
    for seed in [] if args.no_build else args.seeds:
        walls[seed] = build_seed(
            seed, args.workdir.resolve(), args.n_test, args.cores, args.max_items
        )
        print(f"seed {seed}: {walls[seed]:.0f} s", flush=True)
    frames, acceptances = zip(
        *(read_seed(s, args.workdir.resolve()) for s in args.seeds), strict=True
    )
    table = summarise(list(frames))
    everything = pd.concat(frames)
    firsts = everything.drop_duplicates("seed")
    baselines = {
        "majority answer": mean(firsts["majority_rate"]) * 100,
        "majority answer per question type": mean(firsts["type_majority_rate"]) * 100,
    }
    per_seed = [run_scores(frame) for frame in frames]
    scores = {
        checkpoint: over_runs(
            [seed[checkpoint].direct for seed in per_seed],
            [seed[checkpoint].last for seed in per_seed],
        )
        for checkpoint in dict.fromkeys(table["checkpoint"])
    }
    iterations = sorted(set().union(*acceptances))
    acceptance = {k: mean(a[k] for a in acceptances) for k in iterations}
    checks = checks_as_rows(signature_checks(scores, baselines["majority answer"], acceptance))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(table, baselines, checks)
    accepted = "; ".join(
        f"iter{k} {mean(a[k] for a in acceptances):.1%} "
        f"({', '.join(f'{a[k]:.1%}' for a in acceptances)})"
        for k in iterations
    )
    text += f"\nStage III acceptance (mean over seeds, then each seed): {accepted}\n"
    jobs = {seed: job_seconds(seed, args.workdir.resolve()) for seed in args.seeds}
    text += "\nSeconds of jobs per seed (the sum of its jobs' wall times, on 2 cores): "
    text += ", ".join(f"{seed}: {seconds:.0f}" for seed, seconds in jobs.items()) + "\n"
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "seeds": args.seeds,
                "n_test": args.n_test,
                "max_items": args.max_items,
                "wall_seconds_this_invocation": walls,
                "job_seconds": jobs,
                "scores": json.loads(table.to_json(orient="records")),
                "baselines": baselines,
                "acceptance": {str(k): [a[k] for a in acceptances] for k in iterations},
                "checks": checks,
            },
            indent=1,
        )
        + "\n"
    )
    figure(table, baselines, args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
