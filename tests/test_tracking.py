"""Live training curves (config ``tracking``): what our trainer and LLaMA-Factory write for
TensorBoard, read back with TensorBoard's own reader; with ``none`` nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from defaults import objective_keys
from test_pref_training import make_examples

from sherlock.preference.records import preference_row
from sherlock.runtime.step_summary import mean_training_loss
from sherlock.runtime.tracking import Tracking, TrackingError, tracking_environment

SECRET = "hf_tracking_secret_0123456789"
EVENTS = "events.out.tfevents.*"


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``: tag → [(step, value)], by TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def run_script(name: str, arguments: list[str], tracking: list[str]) -> str:
    """A workflow script run as its rule runs it, with a secret in the environment; its output."""
    script = Path(__file__).resolve().parents[1] / "workflow_scripts" / name
    environ = {**os.environ, "HF_TOKEN": SECRET}
    environ.pop("TENSORBOARD_LOGGING_DIR", None)
    result = subprocess.run(
        [sys.executable, str(script), *arguments, *tracking],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def preference_run(tmp_path: Path, tiny_model_dir: Path, records, synthetic_dir) -> Path:
    prefs = tmp_path / "prefs.json"
    prefs.write_text(
        json.dumps([preference_row(ex) for ex in make_examples(records, synthetic_dir, 4)])
    )
    run = tmp_path / "run.yaml"
    settings = {
        **objective_keys(),
        "model_name_or_path": str(tiny_model_dir),
        "dataset": str(prefs),
        "output_dir": str(tmp_path / "offline.partial"),
        "per_device_train_batch_size": 2,
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",  # as rendered: the tracker comes at launch
    }
    run.write_text(yaml.safe_dump(settings))
    return run


def test_tensorboard_receives_every_metric_of_the_sherlock_trainer(
    tmp_path: Path, tiny_model_dir: Path, records, synthetic_dir
) -> None:
    """The workflow's entry point with the options the rules pass (config tracking)."""
    run = preference_run(tmp_path, tiny_model_dir, records, synthetic_dir)
    folder = tmp_path / "results" / "tracking" / "offline"
    folder.mkdir(parents=True)
    (folder / "events.out.tfevents.0.earlier.attempt").write_text("a fresh start empties this")
    result = run_script(
        "train_sherlock.py",
        [str(run), "--model-dir", str(tmp_path / "offline")],
        ["--report-to", "tensorboard", "--tracking-dir", str(folder)],
    )
    summary = json.loads((tmp_path / "offline" / "sherlock_training.json").read_text())
    assert f"mean training loss {mean_training_loss(summary['log_history']):.4f}" in result

    logged = [entry for entry in summary["log_history"] if "loss" in entry]
    assert len(logged) == 2  # 4 records / batch 2, a log line per step
    curves = scalars(folder)
    # every metric of every log line, under Trainer's train/ prefix, at its step
    for key in logged[0]:
        if key not in ("step", "epoch") and isinstance(logged[0][key], float):
            assert f"train/{key}" in curves, key
    for key in (
        "loss/dpo",
        "loss/sc_rejected",
        "loss/sc_chosen",
        "loss/sft",
        "rewards/margins",
        "rewards_sc_rejected/pair1_chosen",
        "rewards_sc_rejected/pair2_rejected",
        "rewards_sc_chosen/pair1_rejected",
        "rewards_sc_chosen/pair2_chosen",
    ):
        assert curves[f"train/{key}"] == [
            (entry["step"], pytest.approx(entry[key], rel=1e-5, abs=1e-6)) for entry in logged
        ]
    assert not (folder / "events.out.tfevents.0.earlier.attempt").exists()
    assert not list((tmp_path / "offline").rglob(EVENTS))  # nothing inside the model folder
    for path in folder.rglob("*"):
        assert SECRET.encode() not in path.read_bytes()  # credentials stay in the environment


def test_none_writes_no_event_file(
    tmp_path: Path, tiny_model_dir: Path, records, synthetic_dir
) -> None:
    from sherlock.preference.run import train_from_file

    run = preference_run(tmp_path, tiny_model_dir, records, synthetic_dir)
    train_from_file(run, tmp_path / "offline", tracking=Tracking())
    assert not list(tmp_path.rglob(EVENTS)) and not list(tmp_path.rglob("runs"))


def test_llamafactory_reports_to_the_training_folder(
    tmp_path: Path, tiny_model_dir: Path, records, synthetic_dir
) -> None:
    """A tiny LLaMA-Factory SFT: the run file keeps report_to none; the launch sends its
    curves to the tracking folder, live (TensorBoard's reader sees the logged losses)."""
    from sherlock.sft.llamafactory import dataset_info, train_config, write_run_files

    rows = [
        {"conversations": record["conversations"], "images": [record["image"]]}
        for record in records[:8]
    ]
    data = tmp_path / "d_a.json"
    data.write_text(json.dumps(rows))
    config = train_config(
        model=str(tiny_model_dir),
        dataset="d_a",
        dataset_dir=tmp_path,
        output_dir=tmp_path / "r0.partial",
        template="qwen2_vl",
        hparams={
            "num_train_epochs": 1,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "cutoff_len": 1024,
            "image_min_pixels": 3136,
            "image_max_pixels": 3136,
            "preprocessing_num_workers": 1,
        },
        media_dir=synthetic_dir,
        seed=1,
    )
    write_run_files(
        tmp_path / "train.yaml", tmp_path / "dataset_info.json", config, dataset_info("d_a", data)
    )
    folder = tmp_path / "tracking" / "r0"
    result = run_script(
        "train_llamafactory.py",
        ["--yaml", str(tmp_path / "train.yaml"), "--model-dir", str(tmp_path / "r0")],
        ["--report-to", "tensorboard", "--tracking-dir", str(folder)],
    )

    assert yaml.safe_load((tmp_path / "train.yaml").read_text())["report_to"] == "none"
    state = json.loads((tmp_path / "r0" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logged) == 2
    # the summary line's mean loss is the logged history's
    assert f"mean training loss {mean_training_loss(state['log_history']):.4f}" in result
    curves = scalars(folder)
    assert curves["train/loss"] == [
        (entry["step"], pytest.approx(entry["loss"], rel=1e-4)) for entry in logged
    ]
    assert not list((tmp_path / "r0").rglob(EVENTS))


def test_a_fresh_start_clears_the_folder_and_a_resume_drops_the_lost_steps(
    tmp_path: Path,
) -> None:
    """Killed after step 5 with its checkpoint at step 3, then resumed: TensorBoard shows steps
    1-3 of the first attempt and 4-6 of the resumed one, each step once."""
    import time

    from torch.utils.tensorboard import SummaryWriter

    folder = tmp_path / "tracking" / "sft"
    tracking = Tracking("tensorboard", str(folder))
    tracking.start(None)
    with SummaryWriter(str(folder)) as killed:
        for step in range(1, 6):
            killed.add_scalar("train/loss", float(step), step)
    time.sleep(1.1)  # event files are ordered by their names, which hold the second
    tracking.start(3)
    with SummaryWriter(str(folder)) as resumed:
        for step in range(4, 7):
            resumed.add_scalar("train/loss", 10.0 + step, step)
    assert scalars(folder)["train/loss"] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 14.0),
        (5, 15.0),
        (6, 16.0),
    ]
    tracking.start(None)
    assert folder.is_dir() and not any(folder.iterdir())
    Tracking().start(None)  # none: touches nothing
    assert not (tmp_path / "none").exists()


def test_the_environment_is_set_for_the_block_only() -> None:
    environ = {"TENSORBOARD_LOGGING_DIR": "/elsewhere"}
    with tracking_environment(Tracking("tensorboard", "runs/x"), environ):
        assert environ["TENSORBOARD_LOGGING_DIR"] == str(Path("runs/x").absolute())
    assert environ == {"TENSORBOARD_LOGGING_DIR": "/elsewhere"}
    with tracking_environment(Tracking(), environ):
        assert environ == {"TENSORBOARD_LOGGING_DIR": "/elsewhere"}


def test_bad_settings_are_named() -> None:
    with pytest.raises(TrackingError, match="unknown tracker 'wandb'"):
        Tracking("wandb", "x")
    with pytest.raises(TrackingError, match="--tracking-dir"):
        Tracking("tensorboard")
