"""``hear-atst run --executor ray`` on a real Ray head started here (127.0.0.1, no dashboard, two worker CPUs and
two declared GPUs): the same embeddings and scores as separate ``eval`` calls (and so as the local executor),
GPU-asking embedding jobs placed one per GPU slot, and a worker killed mid-job retried by Ray."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from suite_helpers import DIGITS, PROBE_FLAGS, fingerprints, run_cli, statuses, suite_args

from evaluation.protocol import ProbeConfig
from evaluation.suite.executors import RayExecutor
from evaluation.suite.jobs import SUCCEEDED, log_path
from evaluation.suite.miniatures import write_miniature
from evaluation.suite.plan import ModelRequest, Settings, build_plan
from evaluation.suite.scheduler import run_plan
from evaluation.suite.suites import load_suite

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_run_equals_eval(cluster: None, tasks_dir: Path, reference: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(*suite_args(tmp_path, tasks_dir, f"{DIGITS},broken", "--executor", "ray", "--workers", "2"))
    assert result.exit_code == 1, result.output  # the broken task's embedding raised
    assert "ray (this machine: 2 CPUs, 2 GPUs)" in result.output
    assert fingerprints(tmp_path, tasks_dir, DIGITS) == reference
    found = statuses(tmp_path)
    assert {found[key] for key in found if DIGITS in key} == {"skipped", "succeeded"}
    assert found["embed/mel/broken-1.0-small"] == "failed"
    broken_log = log_path(tmp_path / "run" / "logs", "embed/mel/broken-1.0-small").read_text()
    assert broken_log.count(": started on ") == 1 and "cannot decode audio" in broken_log  # reported, not retried


def test_gpu_embedding_jobs_get_one_gpu_slot_each(cluster: None, tasks_dir: Path, tmp_path: Path) -> None:
    gunshot = load_suite("hear2021").tasks["gunshot_triangulation"]
    write_miniature(gunshot, tasks_dir)  # a second task, so that two embedding jobs are ready at once
    settings = Settings(tasks_dir, tmp_path / "e", tmp_path / "r")
    plan = build_plan([ModelRequest("mel")], [DIGITS, gunshot.folder], [ProbeConfig(protocol="linear", max_epochs=1)],
                      settings)
    outcomes = run_plan(plan, RayExecutor(2, tmp_path / "logs", embed_gpus=1), tmp_path / "run")
    assert {outcome.status for outcome in outcomes.values()} <= {SUCCEEDED, "skipped"}
    embeds = [outcomes[key] for key in plan.jobs if key.startswith("embed/")]
    probes = [outcomes[key] for key in plan.jobs if key.startswith("probe/")]
    devices = [outcome.worker["cuda_visible_devices"] for outcome in embeds]
    assert all(device in ("0", "1") for device in devices), devices  # one GPU each, set by Ray
    first, second = embeds
    if first.started < second.finished and second.started < first.finished:  # ran at the same time
        assert devices[0] != devices[1]
    assert all(not outcome.worker["cuda_visible_devices"] for outcome in probes)  # probes ask for CPUs only


def test_a_killed_worker_is_retried_and_a_rerun_resumes(cluster: None, tasks_dir: Path, reference: dict[str, str],
                                                        tmp_path: Path) -> None:
    args = suite_args(tmp_path, tasks_dir, DIGITS, "--executor", "ray", "--workers", "2")
    finished: list = []
    runner = threading.Thread(target=lambda: finished.append(run_cli(*args)))
    runner.start()
    probe_log = log_path(tmp_path / "run" / "logs", f"probe/mel/{DIGITS}/hear-points=1-max-epochs=10")
    deadline = time.monotonic() + 120
    while not probe_log.is_file() or " pid " not in probe_log.read_text():
        assert time.monotonic() < deadline and runner.is_alive(), "the probe job never started"
        time.sleep(0.02)
    pid = int(re.search(r" pid (\d+) ", probe_log.read_text()).group(1))
    os.kill(pid, signal.SIGKILL)  # the Ray worker running the probe dies mid-job
    runner.join(300)
    assert finished and finished[0].exit_code == 0, finished[0].output if finished else "still running"
    assert len(re.findall(r": started on ", probe_log.read_text())) == 2  # Ray ran the job again
    assert fingerprints(tmp_path, tasks_dir, DIGITS) == reference
    rerun = run_cli(*args)
    assert rerun.exit_code == 0 and set(statuses(tmp_path).values()) == {"skipped"}
    assert PROBE_FLAGS[0] == "--protocol"
