"""Software stacks: the env files match the package's pins, every rule names its env, and jobs
run with the interpreter of their stack (`python.*`) or the conda env's."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from sherlock.config import ConfigError, generation_stack, interpreter, stack_problem

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
GENERATING_RULES = {"sherlock_sft_data", "offline_prefs", "candidates", "rejected", "evaluate"}


def pip_pins(env_file: Path) -> set[str]:
    spec = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict))
    return set(pip)


def test_env_files_pin_exactly_what_the_package_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    shared = set(project["dependencies"])
    extras = project["optional-dependencies"]
    train_stack = shared | set(extras["train"]) | set(extras["deepspeed"])
    assert pip_pins(ROOT / "envs" / "train.yaml") == train_stack
    assert pip_pins(ROOT / "envs" / "vllm.yaml") == shared | set(extras["vllm"])
    for pin in shared | set(extras["train"]) | set(extras["vllm"]):
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.]*", pin), pin
    # the two stacks really differ where vLLM pins its own versions
    assert "torch==2.14.0" in extras["vllm"] and "torch==2.14.1" in extras["train"]


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule |use rule )", path.read_text(encoding="utf-8")):
            name = re.match(r"(?:use rule \w+ as |rule )(\w+)", block)
            if name:
                blocks[name.group(1)] = block
    return blocks


def test_every_rule_with_a_command_names_the_env_of_its_stack():
    blocks = rule_blocks()
    assert GENERATING_RULES <= set(blocks)
    for name, block in blocks.items():
        if name.endswith("_shard"):
            continue  # `use rule ... with:` keeps the generating rule's env and command
        if "shell:" not in block:
            continue
        expected = "GENERATION_ENV" if name in GENERATING_RULES else "TRAIN_ENV"
        python = "PY_GEN" if name in GENERATING_RULES else "PY"
        if name == "chosen":  # the stack of its judge (the llm judge: the generation stack)
            expected, python = "JUDGE_ENV", "JUDGE_PY"
        assert re.search(rf"conda:\s+{expected}\b", block), name
        assert re.search(rf"python=how\({python}\),", block), name  # never compared
        # the command starts with the stack's interpreter, itself or through gpu_launch (whose
        # command is "{params.python} -m sherlock.runtime.gpu_slots ... -- {params.python} ...")
        assert re.search(r'shell:\s+("\{params\.python\} |gpu_launch\()', block), name


def test_interpreters_and_stacks():
    config = {"generation": {"backend": "vllm"}, "python": {"train": None, "generate": None}}
    assert generation_stack(config) == "vllm"
    assert interpreter(config, "train", conda=False) == "python"
    config["python"]["generate"] = sys.executable
    assert interpreter(config, "generate", conda=False) == sys.executable
    assert interpreter(config, "generate", conda=True) == "python"  # the env decides
    config["python"]["generate"] = "/no/such/python"
    with pytest.raises(ConfigError, match=r"python.generate: /no/such/python .*\.venv-vllm"):
        interpreter(config, "generate", conda=False)
    assert stack_problem(config, conda=True) is None
    config["python"]["generate"] = None
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert "--sdm conda" in stack_problem(config, conda=False)
    assert generation_stack({"generation": {"backend": "transformers"}}) == "train"


def dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "-n", "-p", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
    )


@pytest.mark.workflow
def test_generating_jobs_run_in_the_generation_stack(tmp_path):
    vllm_python = tmp_path / "vllm env" / "bin" / "python"
    vllm_python.parent.mkdir(parents=True)
    vllm_python.symlink_to(sys.executable)
    settings = tmp_path / "vllm.yaml"
    settings.write_text(
        yaml.safe_dump(
            {"generation": {"backend": "vllm"}, "python": {"generate": str(vllm_python)}}
        )
    )
    plan = dry_run(tmp_path, "sft", "--configfile", str(settings))
    assert plan.returncode == 0, plan.stderr[-3000:]
    quoted = f"'{vllm_python}'"
    gen = plan.stdout.split("rule sherlock_sft_data:")[1].split("\n\n")[0]
    launch = re.escape(f"{quoted} -m sherlock.runtime.gpu_slots --count 0 -- {quoted} ")
    assert re.search(launch + r"\S*workflow_scripts/build_sherlock_sft\.py", gen), gen
    assert "--backend vllm" in gen and "--gpu-memory-utilization 0.9" in gen
    assert "--image-min-pixels 3136 --image-max-pixels 3136" in gen  # sft.common's view
    train = plan.stdout.split("rule r0:")[1].split("\n\n")[0]
    assert re.search(
        r"python -m sherlock.runtime.gpu_slots --count 0 -- python \S*train_llamafactory", train
    )

    # without the vLLM environment the plan works and says how to get it; a run stops before
    # its first job (sherlock.plan_check)
    settings.write_text(yaml.safe_dump({"generation": {"backend": "vllm"}}))
    missing = dry_run(tmp_path, "sft", "--configfile", str(settings))
    try:
        import vllm  # noqa: F401
    except ImportError:
        said = missing.stdout + missing.stderr
        assert missing.returncode == 0, said[-3000:]
        assert "generation.backend: vllm needs the vLLM environment" in said
        assert "get it: run with --sdm conda" in said
    settings.write_text(yaml.safe_dump({"python": {"train": str(tmp_path / "nothing")}}))
    bad = dry_run(tmp_path, "sft", "--configfile", str(settings))
    said = bad.stdout + bad.stderr
    assert bad.returncode == 0 and "python.train:" in said and "not an executable" in said
    run = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "--cores", "1", "sft"]
        + ["--configfile", str(settings)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    said = run.stdout + run.stderr
    assert run.returncode != 0 and "nothing was started" in said and "python.train:" in said
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_the_llm_judge_runs_on_the_generation_backend_in_its_stack(tmp_path, monkeypatch):
    """docs/method.md §7.2: the llm judge runs through the same generation backend, so with vLLM
    it is a vLLM engine in the vLLM stack; the exact judge stays in the training stack."""
    # A hub id plans when the hub may be asked; with HF_HUB_OFFLINE set (as conftest sets it)
    # it would have to be in the local cache (sherlock.config_paths). A dry run downloads nothing.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    vllm_python = tmp_path / "vllm env" / "bin" / "python"
    vllm_python.parent.mkdir(parents=True)
    vllm_python.symlink_to(sys.executable)
    quoted = f"'{vllm_python}'"
    target = "results/online/iter1/chosen.json"

    def chosen_command(settings: dict) -> str:
        (tmp_path / "judge.yaml").write_text(yaml.safe_dump(settings))
        plan = dry_run(tmp_path, target, "--configfile", str(tmp_path / "judge.yaml"))
        assert plan.returncode == 0, plan.stderr[-3000:]
        return plan.stdout.split("rule chosen:")[1].split("\n\n")[0]

    llm = {"kind": "llm", "model": "Qwen/Qwen2.5-7B-Instruct", "dtype": "bfloat16"}
    on_vllm = chosen_command(
        {
            "generation": {"backend": "vllm", "vllm": {"max_model_len": 4096}},
            "python": {"generate": str(vllm_python)},
            "online": {"judge": llm},
        }
    )
    launch = re.escape(f"{quoted} -m sherlock.runtime.gpu_slots --count 0 -- {quoted} ")
    assert re.search(launch + r"\S*workflow_scripts/select_chosen\.py", on_vllm), on_vllm
    assert "--judge llm --judge-batch-size 16" in on_vllm
    assert "--backend vllm --max-model-len 4096" in on_vllm  # what its verdicts depend on
    # how it runs: where its model is, its replies saved chunk by chunk, the engine's memory
    assert "--judge-model Qwen/Qwen2.5-7B-Instruct --judge-chunk-size 32" in on_vllm
    assert "--gpu-memory-utilization 0.9" in on_vllm

    on_transformers = chosen_command(
        {"python": {"generate": str(vllm_python)}, "online": {"judge": llm}}
    )
    assert re.search(launch + r"\S*select_chosen\.py", on_transformers)  # python.generate
    assert "--backend transformers" in on_transformers
    assert "--gpu-memory-utilization" not in on_transformers

    exact = chosen_command(
        {"generation": {"backend": "vllm"}, "python": {"generate": str(vllm_python)}}
    )
    launch = r"python -m sherlock.runtime.gpu_slots --count 0 -- python \S*select_chosen"
    assert re.search(launch, exact)
    assert "--judge exact" in exact and "--backend" not in exact
