"""Security defaults: no pickled weights, no remote code unless asked, no unquoted config value.

(The end-to-end proofs, a run under a hostile results folder with a secret in the environment,
are in test_faults.py.)
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from defaults import objective_keys

from sherlock.generation import load_backend
from sherlock.runtime.safe_loading import UnsafeModelError, require_safetensors
from sherlock.sft.llamafactory import train_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
HOSTILE = 'res dir/o\'brien "q" $(touch pwned_subshell) `touch pwned_backtick`'


class _Payload:
    """Unpickling this runs a shell command: what a malicious pytorch_model.bin can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture
def pickled_model(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A model folder with the tiny model's config and processor but pickled weights only."""
    folder = tmp_path / "pickled_model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    return folder, marker


def test_pickled_weights_are_refused_and_never_unpickled(pickled_model, tmp_path: Path) -> None:
    folder, marker = pickled_model
    with pytest.raises(UnsafeModelError, match=r"no \*\.safetensors weights.*pytorch_model\.bin"):
        require_safetensors(folder)
    with pytest.raises(UnsafeModelError):
        load_backend("transformers", str(folder), batch_size=1, device="cpu")
    from sherlock.preference.run import train_from_file

    run = tmp_path / "run.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                **objective_keys(),
                "model_name_or_path": str(folder),
                "dataset": "unused.json",
                "output_dir": str(tmp_path / "out.partial"),
                "report_to": "none",
            }
        )
    )
    with pytest.raises(UnsafeModelError):
        train_from_file(run, tmp_path / "out")
    from sherlock.sft.llamafactory import run_training

    lf = tmp_path / "lf.yaml"
    lf.write_text(yaml.safe_dump({"model_name_or_path": str(folder), "output_dir": "x.partial"}))
    with pytest.raises(UnsafeModelError):
        run_training(lf, tmp_path / "lf_model")
    assert not marker.exists()  # the payload never ran


def test_a_safetensors_folder_and_a_hub_id_pass_the_check(tiny_model_dir: Path) -> None:
    require_safetensors(tiny_model_dir)
    require_safetensors("meta-llama/Llama-3.2-11B-Vision-Instruct")  # use_safetensors=True


def test_remote_code_is_off_unless_the_config_opts_in(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert config["base_model"]["trust_remote_code"] is False
    assert config["online"]["judge"]["trust_remote_code"] is False
    rendered = train_config(
        model="m",
        dataset="d",
        dataset_dir=".",
        output_dir="o",
        template="qwen2_vl",
        hparams={},
        media_dir=".",
        seed=1,
    )
    assert rendered["trust_remote_code"] is False and rendered["report_to"] == "none"

    def commands(*extra: str) -> str:
        result = subprocess.run(
            [*SNAKEMAKE, "--directory", str(tmp_path), "-n", "-p", "iter1", *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    assert "--trust-remote-code" not in commands()
    opt_in = tmp_path / "opt_in.yaml"
    opt_in.write_text("base_model: {trust_remote_code: true}\n")
    planned = commands("--configfile", str(opt_in))
    flagged = {
        next(word for word in line.split() if word.endswith(".py"))  # the workflow script
        for line in planned.splitlines()
        if line.startswith("Shell command: ") and "--trust-remote-code" in line
    }
    # every job that loads the run's models: renderers of all trainings and all generation
    assert {Path(script).stem for script in flagged} == {
        "render_llamafactory",
        "render_sherlock_run",
        "build_sherlock_sft",
        "build_offline_prefs",
        "build_candidates",
        "build_online_prefs",
    }


def test_no_code_of_ours_unpickles() -> None:
    unsafe = re.compile(r"\bpickle\b|torch\.load\(|allow_pickle\s*=\s*True|\bjoblib\b|\bdill\b")
    sources = [*(ROOT / "sherlock").rglob("*.py"), *(ROOT / "workflow_scripts").glob("*.py")]
    offenders = [str(p) for p in sources if unsafe.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_config_path_reaches_the_shell_as_one_quoted_word(tmp_path: Path) -> None:
    """Dry run of everything with hostile paths: each must come out of shell parsing whole."""
    prompt = f"{tmp_path}/prompt $(touch pwned_prompt)/refine 'x'.txt"
    judge = f"{tmp_path}/judge `touch pwned_judge` model"
    # they exist: every config path is checked before any job (sherlock.config_paths)
    Path(prompt).parent.mkdir()
    Path(prompt).write_text((ROOT / "sherlock" / "data" / "prompts" / "refine.txt").read_text())
    Path(judge).mkdir()
    overrides = tmp_path / "hostile.yaml"
    overrides.write_text(
        yaml.safe_dump(
            {
                "results_dir": HOSTILE,
                "prompts": {"refine": prompt},
                "online": {"judge": {"kind": "llm", "model": judge}},
            }
        )
    )
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "--directory",
            str(tmp_path),
            "-n",
            "-p",
            "all",
            "--configfile",
            str(overrides),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    prefix = "Shell command: "
    lines = [line[len(prefix) :] for line in result.stdout.splitlines() if line.startswith(prefix)]
    assert len(lines) > 30  # every job of the default target
    for line in lines:
        words = shlex.split(line)
        for word in words:  # unquoted, "$(touch pwned_x)" would split into fragments
            if word.startswith("{"):  # a training's launch settings: one JSON word
                word = " ".join(map(str, json.loads(word).values()))
            if "pwned_" in word or "brien" in word:
                assert any(value in word for value in (HOSTILE, prompt, judge)), (word, line)
    assert any(prompt in shlex.split(line) for line in lines)
    assert any(judge in shlex.split(line) for line in lines)
    assert not list(tmp_path.rglob("pwned*"))
