"""The synthetic ``demo`` and ``demo_events`` tasks: deterministic, valid HEAR task folders, built on first use by
``hear-atst eval``, and learnable (scores well above chance)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluation.taskfolder import TaskFolder
from hear_atst.cli import app
from tasks.pipeline import prepare_task
from tasks.registry import get_spec

CLASSES = ["beeps", "chirp", "clicks", "high_noise", "low_noise", "tone"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("task", ["demo", "demo_events"])
def test_demo_tasks_are_built_identically_every_time(task: str, tmp_path: Path) -> None:
    first = prepare_task(get_spec(task), tmp_path / "a")
    second = prepare_task(get_spec(task), tmp_path / "b", workers=1)  # another thread count, another write order
    assert first.name == second.name == f"{task}-v1-full"
    assert _files(first) == _files(second)
    assert not (tmp_path / "a" / "_workdir").exists()  # the synthesised sources are removed once the folder is built


def test_demo_is_a_valid_five_fold_scene_task(tmp_path: Path) -> None:
    folder = TaskFolder.load(prepare_task(get_spec("demo"), tmp_path))
    assert folder.embedding_type == "scene" and folder.splits == [f"fold{i:02d}" for i in range(5)]
    assert sum(len(files) for files in folder.labels.values()) == 192
    for split, files in folder.labels.items():
        assert sorted({labels[0] for labels in files.values()}) == CLASSES, split  # every class in every fold
        assert 38 <= len(files) <= 39
    lengths = folder.check_audio(16000)  # every clip present, mono 16-bit at 16 kHz, finite
    assert {n for clips in lengths.values() for n in clips.values()} == {16000}  # 1 s each


def test_demo_events_is_a_valid_event_task_with_onsets_and_offsets(tmp_path: Path) -> None:
    folder = TaskFolder.load(prepare_task(get_spec("demo_events"), tmp_path))
    assert folder.embedding_type == "event" and folder.splits == ["train", "valid", "test"]
    assert {split: len(files) for split, files in folder.labels.items()} == {"train": 24, "valid": 8, "test": 8}
    events = [event for files in folder.labels.values() for clip in files.values() for event in clip]
    assert {event["label"] for event in events} == {"tone", "high_noise", "clicks"}
    assert all(0 <= event["start"] < event["end"] <= 4000 for event in events)
    assert all(200 <= event["end"] - event["start"] <= 1000 for event in events)
    assert all(2 <= len(clip) <= 4 for files in folder.labels.values() for clip in files.values())
    assert {n for clips in folder.check_audio(16000).values() for n in clips.values()} == {64000}  # 4 s each


def _eval(tmp_path: Path, *args: str) -> tuple[str, dict]:
    model = [] if "--model" in args else ["--model", "mel"]
    result = CliRunner().invoke(app, ["eval", *model, "--tasks-dir", str(tmp_path / "tasks"),
                                      "--embeddings-dir", str(tmp_path / "embeddings"),
                                      "--results-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 0, result.output
    (results_path,) = (tmp_path / "runs").rglob("results.json")
    return result.output, json.loads(results_path.read_text())


def test_eval_builds_demo_on_first_use_and_scores_well_above_chance(tmp_path: Path) -> None:
    output, results = _eval(tmp_path, "--task", "demo", "--grid-points", "1", "--max-epochs", "40")
    assert "preparing demo" in output and (tmp_path / "tasks" / "demo-v1-full" / "task_metadata.json").is_file()
    assert results["primary_score"] == "top1_acc" and results["task"]["clips"] == 192
    assert results["score"]["mean"] > 0.5  # chance (the largest class share) is 1/6
    shown = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp_path / "runs"),
                                     "--out", str(tmp_path / "board"), "--html"])
    assert shown.exit_code == 0, shown.output
    assert "| model | demo (top1_acc) |" in (tmp_path / "board" / "leaderboard.md").read_text()
    assert "demo" in (tmp_path / "board" / "leaderboard.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mel", "crepe"])
def test_the_first_command_of_the_readme_scores_well_above_chance(model: str, tmp_path: Path) -> None:
    _, results = _eval(tmp_path, "--task", "demo", "--model", model)  # the default HEAR grid, as a user runs it
    assert results["score"]["mean"] > 0.4


def test_demo_events_onsets_are_found(tmp_path: Path) -> None:
    _, results = _eval(tmp_path, "--task", "demo_events", "--grid-points", "1", "--max-epochs", "30")
    assert results["primary_score"] == "event_onset_200ms_fms"
    assert results["score"]["mean"] > 0.1  # a constant prediction finds no onset (0)


def test_prepare_builds_demo_without_a_source_and_refuses_one(tmp_path: Path) -> None:
    tasks_dir = str(tmp_path / "tasks")
    refused = CliRunner().invoke(app, ["prepare", "demo", "--source", str(tmp_path), "--tasks-dir", tasks_dir])
    assert refused.exit_code == 2 and "demo is synthesised here and reads no --source" in refused.output
    built = CliRunner().invoke(app, ["prepare", "demo", "--tasks-dir", tasks_dir])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "tasks" / "demo-v1-full" / "task_metadata.json").is_file()
