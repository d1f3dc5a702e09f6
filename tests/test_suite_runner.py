"""``hear-atst run`` with the local executor on real task folders: the same numbers as separate ``eval`` calls,
resuming, failures that stop nothing else, problems reported before any work, and the plan."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from suite_helpers import DIGITS, PROBE_FLAGS, fingerprints, run_cli, run_summary, statuses, suite_args

from evaluation.suite.jobs import log_path
from evaluation.suite.plan import Settings, build_plan, worker_threads


def test_run_equals_eval_resumes_and_reports_a_failing_task(tasks_dir: Path, reference: dict[str, str],
                                                            tmp_path: Path) -> None:
    result = run_cli(*suite_args(tmp_path, tasks_dir, f"{DIGITS},broken", "--workers", "2"))
    assert result.exit_code == 1, result.output  # the broken task failed; the other task's jobs all succeeded
    assert fingerprints(tmp_path, tasks_dir, DIGITS) == reference
    assert set(reference) == {"embeddings", "hear-points=1-max-epochs=10-seeds=0-1", "linear-max-epochs=10-seeds=0-1"}
    jobs = {job["key"]: job for job in run_summary(tmp_path)["jobs"]}
    failed = jobs["embed/mel/broken-1.0-small"]
    assert failed["status"] == "failed" and "cannot decode audio" in failed["error"] and Path(failed["log"]).is_file()
    assert "Traceback" in Path(failed["log"]).read_text()
    assert {jobs[f"probe/mel/broken-1.0-small/{run}"]["status"] for run in
            ("hear-points=1-max-epochs=10", "linear-max-epochs=10")} == {"blocked"}
    assert {key: job["status"] for key, job in jobs.items() if DIGITS in key} == {
        f"prepare/{DIGITS}/16000": "skipped",  # the folder has 16 kHz audio already
        f"embed/mel/{DIGITS}": "succeeded",
        f"probe/mel/{DIGITS}/hear-points=1-max-epochs=10": "succeeded",
        f"probe/mel/{DIGITS}/linear-max-epochs=10": "succeeded",
    }
    probe = jobs[f"probe/mel/{DIGITS}/linear-max-epochs=10"]
    assert probe["identity"]["seeds"] == [0, 1] and probe["result_path"].endswith("results.json")
    assert probe["worker"]["pid"] > 0 and probe["seconds"] > 0
    assert "FAILED embed/mel/broken-1.0-small" in result.output
    worker = jobs[f"embed/mel/{DIGITS}"]["worker"]  # the progress display named the worker holding the job
    assert re.search(rf"worker [12] \({worker['host']} pid {worker['pid']}\): embed/mel/{DIGITS} · ", result.output)
    assert "BLOCKED probe/mel/broken-1.0-small/linear-max-epochs=10" in result.output
    assert (tmp_path / "run" / "leaderboard.md").is_file()

    # A rerun skips what is complete; a removed result is recomputed, identically.
    (tmp_path / "results" / "mel" / DIGITS / "linear-max-epochs=10-seeds=0-1" / "results.json").unlink()
    again = run_cli(*suite_args(tmp_path, tasks_dir, DIGITS))
    assert again.exit_code == 0, again.output
    assert statuses(tmp_path) == {
        f"prepare/{DIGITS}/16000": "skipped", f"embed/mel/{DIGITS}": "skipped",
        f"probe/mel/{DIGITS}/hear-points=1-max-epochs=10": "skipped",
        f"probe/mel/{DIGITS}/linear-max-epochs=10": "succeeded"}
    assert fingerprints(tmp_path, tasks_dir, DIGITS) == reference
    assert f"{DIGITS}" in again.output and "(top1_acc)" in again.output


def test_every_problem_is_reported_before_any_work(tasks_dir: Path, tmp_path: Path) -> None:
    result = run_cli("run", "--models", "mel,no_such_model,atst_frame", "--weights", "atst_frame=/nowhere.ckpt",
                     "--tasks", f"{DIGITS},no_such_task", "--tasks-dir", str(tasks_dir), "--embeddings-dir",
                     str(tmp_path / "e"), "--results-dir", str(tmp_path / "r"), "--max-epochs", "2")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4, result.output
    assert "model no_such_model" in lines[0] and "model atst_frame" in lines[1] and "/nowhere.ckpt" in lines[1]
    assert "task no_such_task" in lines[2]
    assert f"task {DIGITS}, probe hear-max-epochs=2: max_epochs=2 is below" in lines[3]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))
    usage = run_cli("run", "--models", "mel", "--tasks", DIGITS, "--suite", "hear2021")
    assert usage.exit_code == 2 and "exactly one of --tasks and --suite" in usage.output


def test_dry_run_prints_the_plan(tasks_dir: Path, tmp_path: Path) -> None:
    result = run_cli(*suite_args(tmp_path, tasks_dir, DIGITS, "--dry-run"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "4 jobs: 1 model(s) × 1 task(s) × 2 probe(s)"
    assert f"  embed/mel/{DIGITS}: to run; 0.9 min of audio" in result.output
    assert f"  probe/mel/{DIGITS}/linear-max-epochs=10: to run; 0.9 min of audio, 2 seed(s)" in result.output
    assert not (tmp_path / "run").exists()


def test_plan_graph_and_thread_division(tasks_dir: Path, tmp_path: Path) -> None:
    from evaluation.protocol import ProbeConfig
    from evaluation.suite.plan import ModelRequest

    settings = Settings(tasks_dir, tmp_path / "e", tmp_path / "r")
    plan = build_plan([ModelRequest("mel")], [DIGITS], [ProbeConfig(seeds=[0, 1, 2])], settings)
    assert [(job.key, job.needs) for job in plan.jobs.values()] == [
        (f"prepare/{DIGITS}/16000", ()),
        (f"embed/mel/{DIGITS}", (f"prepare/{DIGITS}/16000",)),
        (f"probe/mel/{DIGITS}/hear", (f"embed/mel/{DIGITS}",))]
    assert plan.jobs[f"probe/mel/{DIGITS}/hear"].output == tmp_path / "r" / "mel" / DIGITS / "hear-seeds=0-2"
    assert [worker_threads(n, cpus=16) for n in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    assert PROBE_FLAGS[1] == "hear,linear"


def test_a_killed_driver_resumes_with_identical_results(tasks_dir: Path, reference: dict[str, str],
                                                        tmp_path: Path) -> None:
    """``kill -9`` of ``hear-atst run`` while a probe trains: its worker dies with it, and a rerun skips what was
    complete and ends with the same embeddings and scores as separate eval calls."""
    args = suite_args(tmp_path, tasks_dir, DIGITS, "--workers", "1")
    command = [str(Path(sys.executable).parent / "hear-atst"), *args]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    probe_log = log_path(tmp_path / "run" / "logs", f"probe/mel/{DIGITS}/hear-points=1-max-epochs=10")
    deadline = time.monotonic() + 180
    while not probe_log.is_file() or " pid " not in probe_log.read_text():
        assert time.monotonic() < deadline and driver.poll() is None, "the probe job never started"
        time.sleep(0.02)
    worker = int(re.search(r" pid (\d+) ", probe_log.read_text()).group(1))
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker}").exists() and "zombie" not in Path(f"/proc/{worker}/status").read_text():
        assert time.monotonic() < deadline, "the worker outlived the driver"
        time.sleep(0.05)
    assert run_summary(tmp_path)["counts"]["running"] == 1  # run.json as the driver left it
    again = run_cli(*args)
    assert again.exit_code == 0, again.output
    assert statuses(tmp_path)[f"embed/mel/{DIGITS}"] == "skipped"
    assert fingerprints(tmp_path, tasks_dir, DIGITS) == reference


def test_a_task_without_the_models_rate_is_resampled_once(tmp_path: Path) -> None:
    """A task folder with 32 kHz audio only: one prepare job resamples it to mel's 16 kHz, the embedding waits for
    it, and the next plan finds it complete."""
    from evaluation.protocol import ProbeConfig
    from evaluation.suite.executors import LocalExecutor
    from evaluation.suite.miniatures import write_miniature
    from evaluation.suite.plan import ModelRequest
    from evaluation.suite.scheduler import run_plan
    from evaluation.suite.suites import load_suite
    from tasks.audio import read_audio, resample, write_wav_pcm16

    folder = write_miniature(load_suite("hear2021").tasks["gunshot_triangulation"], tmp_path / "tasks")
    for clip in sorted((folder / "16000").rglob("*.wav")):
        audio, rate = read_audio(clip)
        write_wav_pcm16(folder / "32000" / clip.parent.name / clip.name, resample(audio, rate, 32000), 32000)
    shutil.rmtree(folder / "16000")
    settings = Settings(tmp_path / "tasks", tmp_path / "e", tmp_path / "r")
    probes = [ProbeConfig(protocol="linear", max_epochs=1)]
    plan = build_plan([ModelRequest("mel")], [folder.name], probes, settings)
    assert plan.jobs[f"embed/mel/{folder.name}"].needs == (f"prepare/{folder.name}/16000",)
    executor = LocalExecutor(1, tmp_path / "logs")
    try:
        outcomes = run_plan(plan, executor, tmp_path / "run")
    finally:
        executor.close()
    assert [outcome.status for outcome in outcomes.values()] == ["succeeded"] * 3
    assert outcomes[f"prepare/{folder.name}/16000"].result_path == str(folder / "16000")
    again = build_plan([ModelRequest("mel")], [folder.name], probes, settings)
    assert all(job.is_complete() for job in again.jobs.values())


def test_an_epoch_cap_applies_to_the_probes_that_train(tasks_dir: Path, tmp_path: Path) -> None:
    """``--protocol hear,knn --max-epochs N``: hear is capped, knn (which does not train) runs as it is; a cap or grid
    flag that applies to none of the probes is refused, by ``run`` and by ``eval``."""
    from evaluation.probes.registry import probe_class, training_protocols

    assert training_protocols() == ["hear", "linear"] and not probe_class("knn").trains
    common = ["--models", "mel", "--tasks", DIGITS, "--tasks-dir", str(tasks_dir), "--embeddings-dir",
              str(tmp_path / "e"), "--results-dir", str(tmp_path / "r")]
    result = run_cli("run", *common, "--protocol", "hear,knn", "--grid-points", "1", "--max-epochs", "10",
                     "--dry-run")
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0].strip() for line in result.output.splitlines() if "probe/" in line] == [
        f"probe/mel/{DIGITS}/hear-points=1-max-epochs=10", f"probe/mel/{DIGITS}/knn"]
    refused = {
        ("--protocol", "knn", "--max-epochs", "3"):
            "--max-epochs applies to the probes that train (hear, linear); --protocol knn trains none",
        ("--protocol", "linear,knn", "--grid-points", "2"): "--grid and --grid-points apply to --protocol hear only",
    }
    for flags, message in refused.items():
        result = run_cli("run", *common, *flags, "--dry-run")
        assert result.exit_code == 2 and message in result.output, result.output
    result = run_cli("eval", "--model", "mel", "--task", DIGITS, "--tasks-dir", str(tasks_dir), "--protocol", "knn",
                     "--max-epochs", "3", "--dry-run")
    assert result.exit_code == 2, result.output
    assert ("error: --max-epochs applies to the probes that train (hear, linear) only; --protocol knn does not "
            "train") in result.output
