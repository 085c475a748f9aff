"""The workflow itself: lint, dry runs (default and paper preset), a full tiny run and rebuilds.

The full run builds the whole pipeline of the embedded default (Stages I, II and two online
iterations) for real in a temporary working directory (about five minutes on two CPU cores),
then the other tests read its outputs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sherlock.data.response import format_problem, normalise_answer, parse_stages

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
PAPER = ROOT / "config" / "presets" / "paper_llama32v.yaml"
QWEN = ROOT / "config" / "presets" / "qwen25vl_7b.yaml"
DEMO = ROOT / "config" / "presets" / "demo.yaml"

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def planned_jobs(workdir: Path, target: str, *args: str) -> dict[str, int]:
    """Rule → job count of a dry run (empty when there is nothing to do)."""
    result = snakemake(workdir, "-n", target, "--quiet", "rules", *args)
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[-1] if "Job stats:" in text else ""
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    jobs.pop("total", None)
    return {rule: int(count) for rule, count in jobs.items()}


STAGE_I = {
    "synthetic_data",
    "tiny_model",
    "source_records",
    "splits",
    "r0_config",
    "r0",
    "sherlock_sft_data",
    "sft_config",
    "sft",
}
STAGE_II = {"offline_prefs", "offline_config", "offline"}
STAGE_III = {"candidates", "chosen", "rejected", "iter_config", "iter_model"}
EVALUATION = {
    "heldout_benchmark",
    "evaluate",
    "accuracy_table",
    "does_it_work",
    "training_curves",
    "data_report",
}
CHECKPOINTS = ["base", "r0", "sft", "offline", "iter1", "iter2"]


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_of_the_default_plans_every_stage(tmp_path):
    assert set(planned_jobs(tmp_path, "sft")) == STAGE_I
    assert set(planned_jobs(tmp_path, "offline")) == STAGE_I | STAGE_II
    everything = planned_jobs(tmp_path, "iter2")
    assert set(everything) == STAGE_I | STAGE_II | STAGE_III | {"iter2"}
    assert all(everything[rule] == 2 for rule in STAGE_III)  # one job per iteration
    assert planned_jobs(tmp_path, "iter1")["iter_model"] == 1
    # the default target: the last iteration, every checkpoint evaluated, the report's figures
    default = planned_jobs(tmp_path, "all")
    assert {rule: n for rule, n in default.items() if rule in STAGE_I | STAGE_II | STAGE_III} == {
        rule: n for rule, n in everything.items() if rule != "iter2"
    }
    assert set(default) - set(everything) == EVALUATION | {"all"}
    assert default["evaluate"] == len(CHECKPOINTS)  # base, r0, sft, offline, iter1, iter2
    assert default["training_curves"] == len(CHECKPOINTS) - 1  # every trained checkpoint
    assert set(planned_jobs(tmp_path, "evaluation")) == (
        STAGE_I | STAGE_II | STAGE_III | EVALUATION | {"evaluation"}
    ) - {"training_curves", "data_report", "does_it_work"}


def test_the_demo_plans_a_perception_stage_before_stage_one(tmp_path):
    """The demo: the random tiny model learns to see (perception) and becomes the base every
    stage starts from; held-out questions from the validation stream; the rest as the default."""
    jobs = planned_jobs(tmp_path, "all", "--configfile", str(DEMO))
    perception = {"perception_data", "perception_config", "perception"}
    # ... and its report shows the 3-seed study beside the run's own scores
    study = {"seed_study"}
    assert set(jobs) == STAGE_I | STAGE_II | STAGE_III | EVALUATION | perception | study | {"all"}
    assert jobs["evaluate"] == len(CHECKPOINTS) and jobs["seed_study"] == 1
    text = snakemake(tmp_path, "-n", "-p", "perception", "--configfile", str(DEMO)).stdout
    base_init = "results/demo/models/base_init"
    block = text.split("rule tiny_model:")[1].split("\n\n")[0]
    assert f"output: {base_init}" in block and "--hidden-size 128 --num-layers 4" in block
    assert "--image-feature-scale 20.0" in block
    config_block = text.split("rule perception_config:")[1].split("\n\n")[0]
    assert f"--model {base_init} " in config_block and '"freeze_vision_tower": true' in config_block
    assert "rule perception_data:" in text and "--n 2000" in text
    assert "output: results/demo/models/base\n" in text.split("rule perception:")[1]
    synthetic = text.split("rule synthetic_data:")[1].split("\n\n")[0]
    assert "--heldout validation" in synthetic
    # R0 and Sherlock-SFT start from the perceiving base, not from the random one
    plan = snakemake(tmp_path, "-n", "-p", "sft", "--configfile", str(DEMO)).stdout
    for rule in ("r0_config", "sft_config"):
        block = plan.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert "--model results/demo/models/base --template qwen2_vl" in block
    # the preference stages' β_r chosen on the validation stream (the default keeps 0.025)
    offline = snakemake(tmp_path, "-n", "-p", "offline_config", "--configfile", str(DEMO)).stdout
    assert '"pref_beta_refine": 0.25,' in offline.split("rule offline_config:")[1]
    # the embedded default has no perception stage: the random model is the base
    default = snakemake(tmp_path, "-n", "-p", "r0").stdout
    assert "perception" not in default and "output: results/models/base\n" in default


def test_the_iteration_count_decides_the_targets(tmp_path):
    three = tmp_path / "three.yaml"
    three.write_text("online:\n  iterations: 3\nsynthetic:\n  n_train: 600\n")
    jobs = planned_jobs(tmp_path, "iter3", "--configfile", str(three))
    assert jobs["iter_model"] == 3 and jobs["candidates"] == 3
    one = tmp_path / "one.yaml"
    one.write_text("online:\n  iterations: 1\n")
    result = snakemake(tmp_path, "-n", "iter2", "--configfile", str(one), check=False)
    assert result.returncode != 0
    assert "iter2" in result.stdout + result.stderr
    assert planned_jobs(tmp_path, "iter1", "--configfile", str(one))["iter_model"] == 1
    assert set(planned_jobs(tmp_path, "r0")) == STAGE_I - {"sherlock_sft_data", "sft_config", "sft"}


PAPER_BENCHMARKS = {
    "MMBench": "MMBench_DEV_EN_V11.tsv",
    "MMStar": "MMStar.tsv",
    "MMMU": "MMMU_DEV_VAL.tsv",
    "MathVista": "MathVista_MINI.tsv",
    "HallusionBench": "HallusionBench.tsv",
    "AI2D": "AI2D_TEST.tsv",
    "MMVet": "MMVet.tsv",
    "MME": "MME.tsv",
}


def put_paper_benchmarks(workdir: Path) -> None:
    """The eight VLMEvalKit files where the paper preset reads them (a plan needs them to exist,
    not their content)."""
    folder = workdir / "data" / "LMUData"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PAPER_BENCHMARKS.values():
        (folder / name).write_text("index\tquestion\tanswer\timage\n")


def test_the_paper_preset_plans_without_downloads_and_a_run_stops_naming_what_it_needs(tmp_path):
    """Nothing downloaded: the plan works and lists what is missing once, with how to get it; a
    run stops before its first job, naming everything the jobs it would run need."""
    result = snakemake(tmp_path, "-n", "all", "--configfile", str(PAPER))
    text = result.stdout + result.stderr
    warning = text.split("WARNING: ")[1].split("Building DAG")[0]
    assert "source.path: no such file: data/LLaVA-CoT-100k/train.jsonl" in warning
    missing = "evaluation.benchmarks.MME: no file data/LMUData/MME.tsv (VLMEvalKit's dataset MME)"
    assert missing in warning and warning.count("get it: VLMEvalKit downloads") == 1
    assert "'MMBench_DEV_EN_V11', 'MMStar'" in warning  # one command fetches all eight
    # HF_HUB_OFFLINE is set (conftest) and the models are not cached: listed, with hf download
    assert "hf download meta-llama/Llama-3.2-11B-Vision-Instruct" in warning
    assert "Job stats:" in text and not (tmp_path / "results").exists()
    # a run that needs only the data (sft): the data and the base model, not the benchmarks
    data = tmp_path / "data" / "LLaVA-CoT-100k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("{}\n")
    put_paper_benchmarks(tmp_path)
    (tmp_path / "data" / "LMUData" / "MME.tsv").unlink()
    run = snakemake(tmp_path, "--cores", "1", "sft", "--configfile", str(PAPER), check=False)
    said = run.stdout + run.stderr
    assert run.returncode != 0 and "nothing was started" in said
    assert "base_model.path: meta-llama/Llama-3.2-11B-Vision-Instruct" in said
    assert "MME" not in said.split("nothing was started")[1]
    assert not (tmp_path / "results").exists()
    # the whole run needs MME too; a config file laid over the preset leaves it out
    run = snakemake(tmp_path, "--cores", "1", "all", "--configfile", str(PAPER), check=False)
    assert "evaluation.benchmarks.MME: no file" in run.stdout.split("nothing was started")[-1] + (
        run.stderr.split("nothing was started")[-1]
    )
    drop = tmp_path / "drop.yaml"
    drop.write_text("evaluation:\n  benchmarks:\n    MME: null\n")
    jobs = planned_jobs(tmp_path, "all", "--configfile", str(PAPER), str(drop))
    assert jobs["vlmevalkit_benchmark"] == 7


def test_dry_run_of_the_paper_preset(tmp_path, monkeypatch):
    # Nothing downloaded (the plan lists what is missing, above); with the data in place the
    # source file is an input of the plan.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = tmp_path / "data" / "LLaVA-CoT-100k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("{}\n")
    put_paper_benchmarks(tmp_path)
    result = snakemake(tmp_path, "-n", "offline", "--configfile", str(PAPER))
    text = result.stdout
    jobs = planned_jobs(tmp_path, "offline", "--configfile", str(PAPER))
    # nothing is built locally: the base model comes from the hub, the data from the user;
    # every generating step runs as 8 one-GPU shards
    # (and D_A's, D_B's rows with every turn: source.multi_turn whole, as the authors)
    shards = {"sherlock_sft_data_shard", "offline_prefs_shard", "whole_turns"}
    assert set(jobs) == (STAGE_I | STAGE_II | shards) - {"synthetic_data", "tiny_model"}
    jobs = planned_jobs(tmp_path, "iter2", "--configfile", str(PAPER))
    shards |= {"candidates_shard", "rejected_shard"}
    assert set(jobs) == (STAGE_I | STAGE_II | STAGE_III | shards | {"iter2"}) - {
        "synthetic_data",
        "tiny_model",
    }
    # the eight benchmarks: each file converted once, every checkpoint evaluated on each (as 8
    # shards), the open answers (MathVista, MMVet) judged, a prediction file folder each
    jobs = planned_jobs(tmp_path, "all", "--configfile", str(PAPER))
    assert {"data_report", "training_curves", "accuracy_table"} <= set(jobs)
    assert "heldout_benchmark" not in jobs
    assert jobs["vlmevalkit_benchmark"] == 8
    assert jobs["evaluate"] == jobs["vlmevalkit_predictions"] == 8 * len(CHECKPOINTS)
    assert jobs["evaluate_shard"] == 8 * jobs["evaluate"]
    assert jobs["judge_answers"] == 2 * len(CHECKPOINTS)
    eval_plan = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(PAPER)).stdout
    assert "--tsv data/LMUData/MME.tsv --metric mme" in eval_plan
    assert "--tsv data/LMUData/HallusionBench.tsv --metric hallusionbench" in eval_plan
    assert "--tsv data/LMUData/MMBench_DEV_EN_V11.tsv --metric mmbench" in eval_plan
    assert "--metric judge" in eval_plan and "--metric accuracy" in eval_plan
    assert "--judge-batch-size 32" in eval_plan
    assert "--judge-model Qwen/Qwen2.5-7B-Instruct" in eval_plan
    assert "--compare-with-paper" in eval_plan
    plan = snakemake(tmp_path, "-n", "iter2", "--configfile", str(PAPER), "-p").stdout
    assert "--judge llm" in plan and "--judge-model Qwen/Qwen2.5-7B-Instruct" in plan
    # the preference runs freeze what the authors froze; the pool is sized for 5k kept pairs
    for rule in ("offline_config", "iter_config"):
        block = plan.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert '"freeze_vision_tower": true' in block
        assert '"freeze_multi_modal_projector": true' in block
        assert '"freeze_language_model": false' in block
        assert "--image-min-pixels 1 --image-max-pixels 589824" in block  # scaled down only
    assert "--pool 10000 --iterations 2" in plan and "--target 5000" in plan
    # the authors' run where it is no defect (docs/paper_preset.md): R0's raw y0, native images
    # in every generating job, multi-turn records whole, each place's wording of the refine prompt
    sft_data = plan.split("rule sherlock_sft_data_shard:")[1].split("\n\n")[0]
    assert "--native-images" in sft_data and "--no-conclusion-stop" in sft_data
    assert "--refine-prompt trailing_spaces" in sft_data
    candidates = plan.split("rule candidates_shard:")[1].split("\n\n")[0]
    assert "--native-images" in candidates and "--no-conclusion-stop" not in candidates
    assert "--refine-prompt trailing_spaces" in candidates
    r0_config = plan.split("rule r0_config:")[1].split("\n\n")[0]
    assert "--data results/paper_llama32v/data/D_A_whole_turns.json" in r0_config
    assert "--d-b results/paper_llama32v/data/D_B_whole_turns.json" in sft_data
    for rule in ("offline_config", "iter_config", "offline_prefs_shard", "rejected_shard"):
        block = plan.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert "--refine-prompt" not in block  # the clean wording, the scripts' default
        assert "--rejected-prefill" not in block and "--image-resample" not in block
    # the pair steps leave out what the training's cutoff_len could not fit
    assert plan.count("--cutoff-len 4096") >= 2
    # the DeepSpeed file is found wherever snakemake runs (--directory)
    assert str(ROOT / "config" / "deepspeed" / "ds_z3_offload.json") in plan
    assert "results/paper_llama32v/models/r0" in text
    # GPU jobs carry their resource tags
    r0_block = text.split("rule r0:")[1].split("\n\n")[0]
    assert "gpu=8" in r0_block and "runtime=2880" in r0_block
    shard_block = text.split("rule sherlock_sft_data_shard:")[1].split("\n\n")[0]
    assert "gpu=1," in shard_block  # one model on one GPU; eight shards at once
    gather_block = text.split("rule sherlock_sft_data:")[1].split("\n\n")[0]
    assert "gpu=0," in gather_block  # gathering the shards' chunks loads no model
    assert "mem_mb=16000" in gather_block and "cpus_per_task=4" in gather_block  # light
    assert jobs["sherlock_sft_data_shard"] == 8 and jobs["candidates_shard"] == 16
    # every GPU job starts through the device allocator, with its own tag as the count
    assert "python -m sherlock.runtime.gpu_slots --count 8 -- python" in plan
    assert "python -m sherlock.runtime.gpu_slots --count 1 -- python" in plan


def test_dry_run_of_the_qwen_preset(tmp_path, monkeypatch):
    """Qwen2.5-VL-7B with vLLM: generating jobs (8 one-GPU shards) in the vLLM environment's
    Python named by the preset, trainings on 8 GPUs in this one, images at LLaMA-Factory's size."""
    # A hub id plans when the hub may be asked; with HF_HUB_OFFLINE set (as conftest sets it)
    # it would have to be in the local cache (sherlock.config_paths). A dry run downloads nothing.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = tmp_path / "data" / "LLaVA-CoT-100k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("{}\n")
    vllm_python = tmp_path / ".venv-vllm" / "bin" / "python"  # where the README makes it
    vllm_python.parent.mkdir(parents=True)
    vllm_python.symlink_to(sys.executable)
    jobs = planned_jobs(tmp_path, "iter2", "--configfile", str(QWEN))
    shards = {f"{rule}_shard" for rule in ("sherlock_sft_data", "offline_prefs", "candidates")}
    shards.add("rejected_shard")
    assert set(jobs) == (STAGE_I | STAGE_II | STAGE_III | shards | {"iter2"}) - {
        "synthetic_data",
        "tiny_model",
    }
    assert jobs["sherlock_sft_data_shard"] == 8 and jobs["rejected_shard"] == 16
    result = snakemake(tmp_path, "-n", "-p", "iter2", "--configfile", str(QWEN))
    text = result.stdout
    r0_block = text.split("rule r0:")[1].split("\n\n")[0]
    assert "gpu=8" in r0_block and "cpus_per_task=64" in r0_block and "runtime=1440" in r0_block
    assert "python -m sherlock.runtime.gpu_slots --count 8 -- python" in r0_block
    shard_block = text.split("rule candidates_shard:")[1].split("\n\n")[0]
    assert "gpu=1," in shard_block and "mem_mb=64000" in shard_block
    launch = (
        ".venv-vllm/bin/python -m sherlock.runtime.gpu_slots --count 1 -- .venv-vllm/bin/python"
    )
    assert launch in shard_block
    assert "--backend vllm --batch-size 64" in shard_block
    assert "--chunk-size 1024 --gpu-memory-utilization 0.9" in shard_block  # how it runs
    assert "--image-min-pixels 1024 --image-max-pixels 589824" in shard_block
    assert "--max-model-len 8192" in shard_block
    assert "--model results/qwen25vl_7b/models/iter1" in text  # M_1 generates for iteration 2
    yaml_plan = text.split("rule r0_config:")[1].split("\n\n")[0]
    assert "--model Qwen/Qwen2.5-VL-7B-Instruct --template qwen2_vl" in yaml_plan
    assert "ds_z3.json" in text and "ds_z3_offload" not in text


def test_sharded_generation_plans_shard_jobs_then_a_gather(tmp_path):
    shards = tmp_path / "shards.yaml"
    shards.write_text("generation: {shards: 3}\n")
    jobs = planned_jobs(tmp_path, "all", "--configfile", str(shards))
    assert jobs["sherlock_sft_data_shard"] == jobs["offline_prefs_shard"] == 3
    assert jobs["candidates_shard"] == jobs["rejected_shard"] == 6  # 3 per iteration
    assert jobs["evaluate_shard"] == 3 * len(CHECKPOINTS)
    assert jobs["sherlock_sft_data"] == 1 and jobs["evaluate"] == len(CHECKPOINTS)
    plan = snakemake(tmp_path, "-n", "-p", "sft", "--configfile", str(shards)).stdout
    folders = [f"results/data/sherlock_sft.json.shards/{i}" for i in range(3)]
    assert f"--output results/data/sherlock_sft.json --saved-chunks {' '.join(folders)}" in plan
    for i, folder in enumerate(folders):
        assert f"--shard {i} --shards 3 --shard-dir {folder}" in plan
    assert "sherlock_sft_data_shard" not in " ".join(planned_jobs(tmp_path, "all"))  # 1 shard


def test_a_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  r0:\n    lerning_rate: 0.1\n")
    result = snakemake(tmp_path, "-n", "sft", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "sft.r0.lerning_rate: unknown key" in result.stdout + result.stderr


EVAL_ITEMS = 40  # of the 120 held-out questions: keeps the test run short


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The whole pipeline of the embedded default (default target), built for real."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    (workdir / "eval.yaml").write_text(f"evaluation:\n  max_items: {EVAL_ITEMS}\n")
    result = snakemake(workdir, "--cores", "2", "--configfile", "eval.yaml")
    (workdir / "run.log").write_text(result.stdout + result.stderr)
    return workdir


def _read(path: Path):
    return json.loads(path.read_text())


def test_stage_one_outputs(built):
    data = built / "results" / "data"
    d_b = _read(data / "D_B.json")
    rows = _read(data / "sherlock_sft.json")
    assert len(rows) == 2 * len(d_b) == 128
    direct = [r for r in rows if r["kind"] == "direct"]
    refine = [r for r in rows if r["kind"] == "refine"]
    assert len(direct) == len(refine) == len(d_b)
    template = (ROOT / "sherlock" / "data" / "prompts" / "refine.txt").read_text()
    head = template.split("{Question}")[0]
    by_id = {r["id"]: r for r in d_b}
    for row in refine:
        source = by_id[row["source_id"]]
        prompt = row["conversations"][0]["value"]
        assert prompt.startswith("<image>" + head)
        # built from R0's own answer, and trained towards the annotation
        assert row["initial_response"] in prompt
        assert row["initial_model"].endswith("models/r0")
        assert row["conversations"][1]["value"] == source["conversations"][1]["value"]
    # D_A, D_B and the pools are disjoint
    ids = [
        set(r["id"] for r in _read(data / f"{name}.json"))
        for name in ("D_A", "D_B", "pool_1", "pool_2")
    ]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 256 + 64 + 64 + 64
    summary = _read(data / "source_summary.json")
    assert summary["read"] == 480 and summary["rejected"] == 0
    # the LLaMA-Factory run files are there for a user to read
    r0_yaml = yaml.safe_load((built / "results" / "llamafactory" / "r0" / "train.yaml").read_text())
    assert r0_yaml["template"] == "qwen2_vl" and r0_yaml["finetuning_type"] == "full"
    assert r0_yaml["dataset"] == "sherlock_d_a"


@pytest.mark.parametrize("stage", ["r0", "sft", "offline", "iter1", "iter2"])
def test_checkpoints_load_and_answer_in_four_stages(built, stage):
    from sherlock.generation import GenerationRequest, SamplingParams, load_backend

    model = built / "results" / "models" / stage
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
    test_rows = [
        json.loads(line)
        for line in (built / "results" / "synthetic" / "test.jsonl").read_text().splitlines()[:24]
    ]
    requests = [
        GenerationRequest(
            r["id"],
            str(built / "results" / "synthetic" / r["image"]),
            r["conversations"][0]["value"].replace("<image>", "").strip(),
        )
        for r in test_rows
    ]
    backend = load_backend("transformers", str(model), batch_size=24, progress=False)
    answers = backend.generate(requests, SamplingParams(0.0, 1.0, 160, 0))
    well_formed = sum(parse_stages(a) is not None for a in answers)
    # SFT checkpoints keep the format almost always; preference training on the tiny model
    # costs some of it (measured on 48 held-out questions: 48/48 for R0 and SFT, 36/48 Offline)
    floor = 0.9 if stage in ("r0", "sft") else 0.6
    assert well_formed >= floor * len(answers), answers[:3]


def test_second_run_does_nothing_and_a_parameter_change_reruns_exactly_its_dependents(built):
    assert planned_jobs(built, "iter2") == {}
    override = built / "override.yaml"
    override.write_text("sft:\n  sherlock_sft:\n    num_train_epochs: 5\n")
    assert set(planned_jobs(built, "sft", "--configfile", str(override))) == {"sft_config", "sft"}
    override.write_text("sft:\n  r0:\n    learning_rate: 0.002\n")
    assert set(planned_jobs(built, "sft", "--configfile", str(override))) == {
        "r0_config",
        "r0",
        "sherlock_sft_data",
        "sft_config",
        "sft",
    }
    override.write_text("generation:\n  sherlock_sft:\n    temperature: 0.9\n")
    assert set(planned_jobs(built, "offline", "--configfile", str(override))) == {
        "sherlock_sft_data",
        "sft_config",
        "sft",
        "offline_prefs",
        "offline_config",
        "offline",
    }
    # the authors' variants (docs/paper_preset.md) rerun what they change, and only that
    override.write_text("generation:\n  sherlock_sft:\n    stop_at_conclusion: false\n")
    assert set(planned_jobs(built, "sft", "--configfile", str(override))) == {
        "sherlock_sft_data",
        "sft_config",
        "sft",
    }
    override.write_text("offline:\n  rejected_prefill: none\n")
    assert set(planned_jobs(built, "offline", "--configfile", str(override))) == {
        "offline_prefs",
        "offline_config",
        "offline",
    }


def test_offline_prefs_satisfy_the_method_invariants(built):
    from sherlock.data.response import CONCLUSION_END
    from sherlock.perturbation.recipes import truncate

    data = built / "results" / "data"
    d_a = {r["id"]: r for r in _read(data / "D_A.json")}
    rows = _read(data / "offline_prefs.json")
    assert sorted(r["id"] for r in rows) == sorted(d_a)  # one pair per D_A record, none lost
    from defaults import perturbation

    weight = perturbation({"recipe": "reference"}).weight
    for row in rows:
        source = d_a[row["source_id"]]
        chosen, rejected = row["chosen"]["value"], row["rejected"]["value"]
        i, eps = row["truncation"], row["noise_level"]
        # chosen = the annotation Y*; both prefixes are Y* cut at truncation point i
        assert chosen == source["conversations"][1]["value"]
        assert i in (0, 1, 2)
        assert row["prefix"] == row["prefix_l"] == truncate(chosen, i, "reference")
        assert chosen.startswith(row["prefix"]) and rejected.startswith(row["prefix_l"])
        # the continuation is cut right after its first </CONCLUSION>
        assert rejected.count(CONCLUSION_END) <= 1
        assert CONCLUSION_END not in rejected or rejected.endswith(CONCLUSION_END)
        # ε in its range, random pixels (ε = 1) only at the deepest point, w from the formula
        if row["random_pixels"]:
            assert i == 2 and eps == 1.0
        else:
            assert 0.15 <= eps <= 0.25
        assert row["weights"] == pytest.approx(weight(i, eps))
        # provenance: generated by SFT on a perturbed copy; trained with the original image
        assert row["model"].endswith("models/sft")
        assert row["images"] == source["images"]
        assert (built / row["perturbed_image"]).is_file()
    summary = yaml.safe_load((data / "offline_prefs_summary.yaml").read_text())
    assert summary["records"] == len(rows) == 256
    assert set(summary["truncation_counts"]) == {0, 1, 2}


def test_offline_training_lowers_the_loss_from_sft(built):
    model = built / "results" / "models" / "offline"
    run = yaml.safe_load((built / "results" / "runs" / "offline" / "train.yaml").read_text())
    assert run["model_name_or_path"] == "results/models/sft"  # initialised from and referenced to
    assert run["precompute_ref_log_probs"] is True
    log = _read(model / "sherlock_training.json")
    assert log["records"] == 256
    steps = [entry for entry in log["log_history"] if "loss" in entry]
    assert len(steps) >= 3
    assert (steps[-1]["loss"] + steps[-2]["loss"]) / 2 < 0.9 * steps[0]["loss"]
    assert steps[-1]["rewards/margins"] > 0 and steps[-1]["rewards/accuracies"] > 0.5


def test_a_perturbation_or_online_change_reruns_exactly_its_dependents(built):
    override = built / "override_perturbation.yaml"
    override.write_text("perturbation:\n  reference:\n    noise_high: 0.3\n")
    assert set(planned_jobs(built, "offline", "--configfile", str(override))) == STAGE_II
    # the online learning rate: both iterations retrain, and iteration 2's data, which M_1
    # generates, is rebuilt; Stages I and II and iteration 1's data stay
    override.write_text("preference:\n  online:\n    learning_rate: 0.0002\n")
    jobs = planned_jobs(built, "iter2", "--configfile", str(override))
    assert jobs == {
        "iter_config": 2,
        "iter_model": 2,
        "candidates": 1,
        "chosen": 1,
        "rejected": 1,
        "iter2": 1,
    }


# How the pipeline runs, never what it computes (docs/configuration.md, "What reruns"): each
# group changes settings of the second column at once.
EXECUTION_CHANGES = {
    "shards and chunks": (
        "generation: {shards: 2, chunk_size: 64}\nonline: {judge: {chunk_size: 64}}\n"
    ),
    "training logistics": """
checkpointing: {save_steps: 7, save_total_limit: 1, resume: false}
tracking: {report_to: tensorboard}
intermediates: {keep_perturbed_images: false}
resources:
  train: {mem_mb: 9000, runtime: 90, cpus_per_task: 1}
  generate: {mem_mb: 9000, runtime: 90, cpus_per_task: 1}
# the per-device batch and accumulation at the same global batch (8 × 1 and 4 × 1)
sft: {common: {per_device_train_batch_size: 4, gradient_accumulation_steps: 2, logging_steps: 3,
               preprocessing_num_workers: 2}}
preference: {common: {per_device_train_batch_size: 2, gradient_accumulation_steps: 2,
                      dataloader_num_workers: 1, logging_steps: 5, per_device_eval_batch_size: 3}}
""",
    # sharding and the policy for a non-finite step: how a training runs, not what it learns
    "sharding": """
sft: {common: {fsdp: full_shard auto_wrap, fsdp_config: config/fsdp/fsdp2.json,
               nonfinite_steps: skip}}
preference: {common: {fsdp: full_shard auto_wrap, fsdp_config: config/fsdp/fsdp2.json,
                      nonfinite_steps: skip}}
""",
}


@pytest.mark.parametrize("change", sorted(EXECUTION_CHANGES))
def test_an_execution_change_rebuilds_nothing(built, change):
    override = built / f"execution_{change.replace(' ', '_')}.yaml"
    override.write_text(EXECUTION_CHANGES[change])
    assert planned_jobs(built, "all", "--configfile", "eval.yaml", str(override)) == {}


def another_name_of_this_python() -> Path:
    """The running interpreter by another name in its own folder (python3 for python)."""
    here = Path(sys.executable)
    return next(
        path for path in (here.with_name("python3"), here.with_name("python"))
        if path.exists() and path.name != here.name
    )  # fmt: skip


def test_another_path_to_the_same_python_or_checkout_rebuilds_nothing(built, tmp_path):
    """Interpreters named by another path (the venv's bin/python3 beside bin/python), and the
    workflow run from a copy of the checkout somewhere else."""
    python = another_name_of_this_python()
    override = built / "interpreters.yaml"
    override.write_text(f"python: {{train: {python}, generate: {python}}}\n")
    assert planned_jobs(built, "all", "--configfile", "eval.yaml", str(override)) == {}
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    checkout = tmp_path / "moved checkout"
    for name in files:
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile")]
        + ["--directory", str(built), "-n", "all", "--configfile", "eval.yaml"],
        capture_output=True,
        text=True,
        cwd=built,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_moved_working_directory_rebuilds_nothing(built):
    moved = built.parent / f"{built.name} moved"
    shutil.move(built, moved)
    try:
        assert planned_jobs(moved, "all", "--configfile", "eval.yaml") == {}
    finally:
        shutil.move(moved, built)


def test_a_learning_rate_change_reruns_exactly_its_dependents(built):
    """The Offline learning rate: Offline and everything after it (both iterations, their data,
    the evaluation of offline, iter1, iter2 and the report's tables); nothing of Stage I."""
    override = built / "offline_lr.yaml"
    override.write_text("preference: {offline: {learning_rate: 5.0e-5}}\n")
    jobs = planned_jobs(built, "all", "--configfile", "eval.yaml", str(override))
    after = ["offline", "iter1", "iter2"]
    assert jobs == {
        "offline_config": 1,
        "offline": 1,
        **{rule: 2 for rule in ("candidates", "chosen", "rejected", "iter_config", "iter_model")},
        "evaluate": len(after),
        "training_curves": len(after),
        "accuracy_table": 1,
        "does_it_work": 1,
        "data_report": 1,
        "all": 1,
    }


def test_online_iterations_chain_models_and_keep_the_method_invariants(built):
    from sherlock.data.response import normalise_answer
    from sherlock.perturbation.recipes import truncate

    online = built / "results" / "online"
    previous = "results/models/offline"
    for k in (1, 2):
        folder = online / f"iter{k}"
        candidates = _read(folder / "candidates.json")
        pool = _read(built / "results" / "data" / f"pool_{k}.json")
        assert [c["id"] for c in candidates] == [r["id"] for r in pool]
        # iteration k generates with M_{k-1}, starts from it and is referenced to it
        assert {c["model"] for c in candidates} == {previous}
        assert {c["iteration"] for c in candidates} == {k}
        assert all(len(c["turns"]) == 4 for c in candidates)
        run = yaml.safe_load((built / "results" / "runs" / f"iter{k}" / "train.yaml").read_text())
        assert run["model_name_or_path"] == previous
        chosen = _read(folder / "chosen.json")
        summary = yaml.safe_load((folder / "chosen_summary.yaml").read_text())
        assert summary["kept"] == len(chosen) >= 8  # online.min_pairs
        assert summary["kept"] + sum(summary["not_kept"].values()) == len(candidates)
        for row in chosen:  # turns 1-3 agree
            assert len({normalise_answer(a) for a in row["answers"][1:]}) == 1
        pairs = _read(folder / "rejected.json")
        by_id = {row["id"]: row for row in chosen}
        assert sorted(p["id"] for p in pairs) == sorted(by_id)
        for pair in pairs:
            y = by_id[pair["id"]]["turns"]
            i = pair["truncation"]
            assert pair["chosen"]["value"] == y[3]  # chosen = y3
            assert pair["prefix"] == truncate(y[3], i, "reference")
            assert pair["prefix_l"] == truncate(y[0], i, "reference")  # head of y0
            assert pair["rejected"]["value"].startswith(pair["prefix_l"])
            assert pair["model"] == previous and pair["iteration"] == k
        log = _read(built / "results" / "models" / f"iter{k}" / "sherlock_training.json")
        assert log["records"] == len(pairs)
        previous = f"results/models/iter{k}"


def test_every_checkpoint_is_scored_direct_and_per_correction_turn(built):
    import pandas as pd

    from sherlock.evaluation.benchmark_files import read_benchmark
    from sherlock.evaluation.scoring import score_response

    results = built / "results"
    # the held-out benchmark is the synthetic test split, answers = the annotated conclusions
    test_rows = [
        json.loads(x) for x in (results / "synthetic" / "test.jsonl").read_text().split("\n") if x
    ]
    items = read_benchmark(results / "eval" / "benchmarks" / "heldout.jsonl")
    assert [item.id for item in items] == [row["id"] for row in test_rows]
    assert items[0].answer in test_rows[0]["conversations"][1]["value"]
    table = pd.read_parquet(results / "eval" / "accuracy.parquet")
    assert list(dict.fromkeys(table["checkpoint"])) == CHECKPOINTS
    assert sorted(set(table["turn"])) == [0, 1, 2, 3]
    assert len(table) == len(CHECKPOINTS) * 4 and set(table["items"]) == {EVAL_ITEMS}
    assert pd.read_csv(results / "eval" / "accuracy.csv").shape == table.shape
    by_item = {item.id: item for item in items}
    for checkpoint in CHECKPOINTS:
        rows = _read(results / "eval" / "heldout" / f"{checkpoint}_responses.json")
        assert len(rows) == EVAL_ITEMS and all(len(row["turns"]) == 4 for row in rows)
        for turn in range(4):
            # the table agrees with the responses, scored again here
            statuses = [score_response(by_item[r["id"]], r["turns"][turn]).status for r in rows]
            assert statuses == [row["statuses"][turn] for row in rows]
            line = table[(table["checkpoint"] == checkpoint) & (table["turn"] == turn)].iloc[0]
            assert line["correct"] == statuses.count("correct")
            assert line["no_conclusion"] == statuses.count("no_conclusion")
            broken = [format_problem(r["turns"][turn]) is not None for r in rows]
            assert line["no_format"] == pytest.approx(sum(broken) / EVAL_ITEMS, abs=1e-6)
            assert line["accuracy"] == pytest.approx(statuses.count("correct") / EVAL_ITEMS)
            said = {normalise_answer(p) for r in rows if (p := r["predictions"][turn])}
            assert line["distinct_answers"] == len(said)
    # blind baselines: the most common answer, overall and per question type
    evaluated = items[:EVAL_ITEMS]
    answers = [item.answer for item in evaluated]
    assert table["majority_rate"].tolist() == pytest.approx(
        [max(map(answers.count, answers)) / EVAL_ITEMS] * len(table), abs=1e-6
    )
    kinds = {row["id"]: row["kind"] for row in test_rows}
    by_kind = {k: [i.answer for i in evaluated if kinds[i.id] == k] for k in set(kinds.values())}
    typed = sum(max(map(a.count, a)) for a in by_kind.values()) / EVAL_ITEMS
    assert table["type_majority_rate"].tolist() == pytest.approx([typed] * len(table), abs=1e-6)
    direct = table[table["turn"] == 0].set_index("checkpoint")
    # every answer is read with auto (the default): the CONCLUSION, else the whole response
    assert set(table["answer_from"]) == {"auto"} and set(table["no_conclusion"]) == {0}
    # the random base model never writes the four-stage format (its text is read whole, and
    # is no answer); trained checkpoints mostly write it, and answer and score
    assert direct.loc["base", "no_format"] == 1.0 and direct.loc["base", "correct"] == 0
    assert direct.loc["r0", "correct"] > 0.15 * EVAL_ITEMS
    for checkpoint in CHECKPOINTS[1:]:
        assert direct.loc[checkpoint, "no_format"] <= 0.5
    # one summary line per step at the end of the run's output
    log = (built / "run.log").read_text()
    for step in ("splits", "train r0", "evaluate iter2 on heldout", "accuracy table"):
        assert f"[sherlock] {step}: " in log


def _report_files(report_html: str) -> dict[str, str]:
    """file name -> its base64 payload, for every result the report embeds."""
    return dict(
        re.findall(r"data:[\w/+.-]+;charset=utf8;filename=([^;]+);base64,([^\"]+)", report_html)
    )


def test_the_report_builds_and_shows_the_accuracy_table(built):
    import base64

    import pandas as pd

    snakemake(built, "--report", "report.html", "--configfile", "eval.yaml")
    files = _report_files((built / "report.html").read_text())
    expected = {
        "accuracy_table.html",
        "accuracy_by_turn.png",
        "data_stages.html",
        "perturbations.png",
        "acceptance.png",
        "does_it_work.html",
        *(f"training_{name}.png" for name in CHECKPOINTS[1:]),
    }
    assert expected <= set(files)
    table_html = base64.b64decode(files["accuracy_table.html"]).decode()
    table = pd.read_parquet(built / "results" / "eval" / "accuracy.parquet")
    for checkpoint in CHECKPOINTS:
        assert f">{checkpoint}</th>" in table_html
        direct = table[(table["checkpoint"] == checkpoint) & (table["turn"] == 0)]["accuracy"]
        assert f">{direct.iloc[0] * 100:.1f}</td>" in table_html
    # does it work? the run's scores, distinct answers and blind baselines, the signature's goals
    works = base64.b64decode(files["does_it_work.html"]).decode()
    direct = table[table["turn"] == 0].set_index("checkpoint")
    for checkpoint in CHECKPOINTS:
        assert f">{int(direct.loc[checkpoint, 'distinct_answers'])}</td>" in works
    assert f">{direct['majority_rate'].iloc[0] * 100:.1f}</td>" in works
    assert "R0's last correction turn below its direct answer" in works
    for name in expected - {"accuracy_table.html", "data_stages.html", "does_it_work.html"}:
        assert base64.b64decode(files[name])[:8] == b"\x89PNG\r\n\x1a\n"
    stages = base64.b64decode(files["data_stages.html"]).decode()
    assert "acceptance" in stages and "offline preference pairs" in stages


def sherlock_correct(results: Path, rounds: int, max_new_tokens: int) -> str:
    """``sherlock-correct`` on the run's ``iter2`` and its first held-out question; its output."""
    command = Path(sys.executable).with_name("sherlock-correct")
    assert command.is_file(), "the sherlock-correct entry point is installed with the package"
    row = json.loads((results / "synthetic" / "test.jsonl").read_text().split("\n")[0])
    question = row["conversations"][0]["value"].replace("<image>", "").strip()
    result = subprocess.run(
        [str(command), "--model", str(results / "models" / "iter2")]
        + ["--image", str(results / "synthetic" / row["image"]), "--question", question]
        + ["--rounds", str(rounds), "--max-new-tokens", str(max_new_tokens)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_the_inference_command_runs_on_a_trained_checkpoint(built):
    out = sherlock_correct(built / "results", rounds=3, max_new_tokens=160)
    assert out.count("=== ") == 4 and "=== self-correction round 3 ===" in out
    assert out.count("--- answer: ") == 4
