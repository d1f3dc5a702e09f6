"""``hear-atst run --executor ray`` on a real Ray head started here (127.0.0.1, no dashboard, two worker CPUs and
two declared GPUs): the same embeddings and scores as separate ``eval`` calls (and so as the local executor),
two GPU-asking embedding jobs run at the same time on distinct GPU slots, and a worker killed mid-job retried by Ray."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from suite_helpers import DIGITS, PROBE_FLAGS, fingerprints, run_cli, run_summary, statuses, suite_args

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
    worker = next(job["worker"] for job in run_summary(tmp_path)["jobs"] if job["key"] == f"embed/mel/{DIGITS}")
    assert f"({worker['host']} pid {worker['pid']}): embed/mel/{DIGITS} · " in result.output  # the worker's word
    assert fingerprints(tmp_path, tasks_dir, DIGITS) == reference
    found = statuses(tmp_path)
    assert {found[key] for key in found if DIGITS in key} == {"skipped", "succeeded"}
    assert found["embed/mel/broken-1.0-small"] == "failed"
    broken_log = log_path(tmp_path / "run" / "logs", "embed/mel/broken-1.0-small").read_text()
    assert broken_log.count(": started on ") == 1 and "cannot decode audio" in broken_log  # reported, not retried


MEETING_MODEL = '''"""A HEAR module whose embedding calls wait, inside a job, until another job's have started too: two
embedding jobs succeed only when they run at the same time. Each job leaves the CUDA_VISIBLE_DEVICES it was given."""
import os
import time
import uuid

import torch

HOP = 400  # samples: 25 ms at 16 kHz
PEERS = 2
TIMEOUT_S = 120


class Meeting(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = timestamp_embedding_size = 8

    def __init__(self, meet_dir):
        super().__init__()
        self.meet_dir = meet_dir
        self.met = False
        self.projection = torch.nn.Parameter(torch.randn(HOP, 8, generator=torch.Generator().manual_seed(0)))


def load_model(model_file_path="", *, meet_dir):
    return Meeting(meet_dir)


def meet(model):
    """Arrive (once per loaded model, so once per job) and wait for the other job. Before the folder exists (the
    plan loads the model in the driver) there is nothing to meet."""
    if model.met or not os.path.isdir(model.meet_dir):
        return
    arrival = os.path.join(model.meet_dir, uuid.uuid4().hex)
    with open(arrival + ".part", "w") as file:
        file.write(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    os.replace(arrival + ".part", arrival)
    deadline = time.monotonic() + TIMEOUT_S
    while len([name for name in os.listdir(model.meet_dir) if not name.endswith(".part")]) < PEERS:
        if time.monotonic() > deadline:
            raise TimeoutError("no other embedding job started while this one ran")
        time.sleep(0.05)
    model.met = True


def get_timestamp_embeddings(audio, model):
    meet(model)
    n = audio.shape[1] // HOP
    frames = audio[:, : n * HOP].reshape(audio.shape[0], n, HOP)
    stamps = (torch.arange(n) * 25.0 + 12.5).expand(audio.shape[0], n).float()
    return frames @ model.projection, stamps


def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)
'''


def test_gpu_embedding_jobs_run_at_once_one_gpu_slot_each(cluster: None, tasks_dir: Path, tmp_path: Path) -> None:
    """Two embedding jobs asking for a GPU each on a head declaring two: they run at the same time (each waits for
    the other inside its job, or fails), and Ray gives them distinct GPU slots."""
    gunshot = load_suite("hear2021").tasks["gunshot_triangulation"]
    write_miniature(gunshot, tasks_dir)  # a second task, so that two embedding jobs are ready at once
    model_file, meet_dir = tmp_path / "meeting.py", tmp_path / "meet"
    model_file.write_text(MEETING_MODEL)
    settings = Settings(tasks_dir, tmp_path / "e", tmp_path / "r")
    plan = build_plan([ModelRequest(str(model_file), options={"meet_dir": str(meet_dir)})], [DIGITS, gunshot.folder],
                      [ProbeConfig(protocol="linear", max_epochs=1)], settings)
    meet_dir.mkdir()
    executor = RayExecutor(2, tmp_path / "logs", embed_gpus=1)
    try:
        outcomes = run_plan(plan, executor, tmp_path / "run")
    finally:
        executor.close()
    embeds = [outcomes[key] for key in plan.jobs if key.startswith("embed/")]
    probes = [outcomes[key] for key in plan.jobs if key.startswith("probe/")]
    assert [outcome.status for outcome in embeds] == [SUCCEEDED, SUCCEEDED], [o.error for o in embeds]
    assert sorted(path.read_text() for path in meet_dir.iterdir()) == ["0", "1"]  # what each job saw, meeting
    assert sorted(outcome.worker["cuda_visible_devices"] for outcome in embeds) == ["0", "1"]
    assert [outcome.status for outcome in probes] == [SUCCEEDED, SUCCEEDED]
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
