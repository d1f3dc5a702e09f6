"""The strict HEAR validator: it passes this project's modules and catches each defect it is meant to catch."""

from __future__ import annotations

import textwrap

import pytest
import typer
from atst_helpers import write_c2f_checkpoint
from typer.testing import CliRunner

from hear_atst.commands import validate
from hear_atst.validate import LONG_SECONDS, MIN_LONG_SECONDS, validate_module

CHECKS = {"api", "model-type", "sample-rate", "scene_embedding_size", "timestamp_embedding_size", "eval-mode",
          "shapes", "spacing", "hop<=50ms", "first-centre", "grid", "centring", "long-audio-memory",
          "long-audio-grid", "long-audio-drift", "batch-invariance", "determinism", "padding"}
SHORT_LONG_SECONDS = 120.0  # enough for the defects below; the modules themselves are checked on 20 minutes

# Defective HEAR modules built on the log-mel baseline; each has one defect.
DEFECTS = {
    # token start times instead of centres (as the authors' embedding.py)
    "start_times": """
        def get_timestamp_embeddings(audio, model):
            embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
            return embeddings, timestamps - 15.0
    """,
    # embedding.py's 1001-frame chunks: one frame dropped per chunk, later tokens late by 10 ms per chunk
    "dropped_frames": """
        def get_timestamp_embeddings(audio, model):
            frames = model.frontend(torch.nn.functional.pad(audio, (0, max(0, 513 - audio.shape[1]))))[:, 0]
            tokens = []
            for start in range(0, frames.shape[-1], 1001):
                chunk = frames[..., start : start + 1000]
                n = chunk.shape[-1] // 4
                tokens.append(chunk[..., : 4 * n].reshape(audio.shape[0], 64, n, 4).mean(-1).transpose(1, 2))
            embeddings = torch.cat(tokens, dim=1)
            timestamps = 40.0 * torch.arange(embeddings.shape[1]).float() + 15.0
            return embeddings, timestamps.expand(audio.shape[0], -1).contiguous()
    """,
    # the 80 dB floor taken over the whole batch instead of per clip (torchaudio on a rank-3 batch)
    "batch_dependent": """
        def get_timestamp_embeddings(audio, model):
            power = model.frontend.power_mel(torch.nn.functional.pad(audio, (0, max(0, 513 - audio.shape[1]))))
            db = 10.0 * torch.log10(power.clamp(min=1e-10))
            frames = ((torch.maximum(db, db.amax() - 80.0) + 79.6482) / 130.3324 * 2 - 1).transpose(1, 2)
            n = frames.shape[1] // 4
            embeddings = frames[:, : 4 * n].reshape(audio.shape[0], n, 4, 64).mean(2)
            timestamps = 40.0 * torch.arange(n).float() + 15.0
            return embeddings, timestamps.expand(audio.shape[0], -1).contiguous()

        def get_scene_embeddings(audio, model):
            tokens = get_timestamp_embeddings(audio, model)[0]
            return torch.cat([tokens.mean(1), tokens.std(1)], dim=-1)
    """,
    "nondeterministic": """
        def get_scene_embeddings(audio, model):
            embeddings = mel.get_scene_embeddings(audio, model)
            return embeddings + 1e-6 * torch.rand_like(embeddings)  # within batch-invariance tolerance
    """,
    "float64_timestamps": """
        def get_timestamp_embeddings(audio, model):
            embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
            return embeddings, timestamps.double()
    """,
    "training_mode": """
        def load_model(model_file_path=None):
            return mel.load_model(model_file_path).train()
    """,
    # a work buffer of 200 floats per sample on long audio (1.4 GiB for the check's 2 minutes, over its ~1 GiB budget)
    "memory_grows_with_length": """
        def get_timestamp_embeddings(audio, model):
            if audio.shape[1] > 30 * 16000:
                buffer = torch.ones(audio.shape[1], 200)
                audio = audio + 0 * buffer[:, 0]
            return mel.get_timestamp_embeddings(audio, model)
    """,
    # the defects below once crashed the validator itself; each is now a failed check
    "seconds_timestamps": """
        def get_timestamp_embeddings(audio, model):
            embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
            return embeddings, timestamps / 1000.0
    """,
    "one_timestamp": """
        def get_timestamp_embeddings(audio, model):
            embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
            return embeddings.mean(1, keepdim=True), timestamps[:, -1:]
    """,
    "raises": """
        def get_scene_embeddings(audio, model):
            raise RuntimeError("boom")
    """,
    "numpy_timestamps": """
        def get_timestamp_embeddings(audio, model):
            embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
            return embeddings.numpy(), timestamps.numpy()
    """,
}
EXPECTED_FAILURES = {
    "start_times": {"centring", "grid", "long-audio-grid"},  # and the end of the audio is left uncovered
    "dropped_frames": {"centring", "long-audio-grid", "long-audio-drift"},
    "batch_dependent": {"batch-invariance"},
    "nondeterministic": {"determinism"},
    "float64_timestamps": {"shapes"},
    "training_mode": {"eval-mode"},
    "memory_grows_with_length": {"long-audio-memory"},
    "seconds_timestamps": {"grid", "centring", "long-audio-grid", "long-audio-drift"},
    "one_timestamp": {"spacing", "centring"},
    "raises": {"shapes"},
    "numpy_timestamps": {"shapes"},
}
PRELUDE = """
import torch
from hear_atst import mel
from hear_atst.mel import get_scene_embeddings, get_timestamp_embeddings, load_model
"""


def failed(results):
    return {r.name for r in results if not r.passed}


def test_atst_frame_passes_every_check_with_20_minutes(fixtures_dir):
    results = validate_module("atst_frame", fixtures_dir / "atst_frame_lightning.ckpt")
    assert {r.name for r in results} == CHECKS
    assert failed(results) == set(), [r for r in results if not r.passed]
    memory = next(r for r in results if r.name == "long-audio-memory")
    assert memory.detail.startswith("1200 s")


@pytest.mark.parametrize("module", ["mel", *(pytest.param(m, marks=pytest.mark.slow)
                                             for m in ("atst_clip", "atst_c2f", "asit"))])
def test_every_other_module_passes_every_check(fixtures_dir, tmp_path, module):
    weights = {"atst_clip": fixtures_dir / "atst_clip_lightning.ckpt", "asit": fixtures_dir / "asit.pt",
               "atst_c2f": write_c2f_checkpoint(fixtures_dir, tmp_path / "c2f.ckpt")}.get(module)
    results = validate_module(module, weights)
    assert {r.name for r in results} == CHECKS
    assert failed(results) == set(), [r for r in results if not r.passed]


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_is_caught(tmp_path, monkeypatch, defect):
    name = f"defective_{defect}"
    (tmp_path / f"{name}.py").write_text(PRELUDE + textwrap.dedent(DEFECTS[defect]))
    monkeypatch.syspath_prepend(str(tmp_path))
    results = validate_module(name, long_seconds=SHORT_LONG_SECONDS)
    assert failed(results) == EXPECTED_FAILURES[defect], [r for r in results if not r.passed]


def test_the_baseline_the_defects_are_built_on_passes(tmp_path, monkeypatch):
    (tmp_path / "defective_none.py").write_text(PRELUDE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert failed(validate_module("defective_none", long_seconds=SHORT_LONG_SECONDS)) == set()


def test_missing_api_and_failing_load_stop_early(tmp_path, monkeypatch):
    (tmp_path / "no_scene.py").write_text("def load_model():\n    pass\n\ndef get_timestamp_embeddings(a, m):\n"
                                          "    pass\n")
    (tmp_path / "bad_load.py").write_text(PRELUDE + "\ndef load_model():\n    raise OSError('no weights here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    results = validate_module("no_scene")
    assert [(r.name, r.status) for r in results] == [("api", "fail")]
    assert "get_scene_embeddings" in results[0].detail
    results = validate_module("bad_load")
    assert results[-1].name == "load_model" and "no weights here" in results[-1].detail
    assert validate_module("hear_atst.no_such_module")[0].name == "import"


def test_command_prints_a_table_and_exits_non_zero_on_failure(tmp_path, monkeypatch, fixtures_dir):
    app = typer.Typer()
    app.command()(validate)
    app.command("other")(lambda: None)  # two commands: typer keeps the sub-command name
    (tmp_path / "defective_nondeterministic.py").write_text(PRELUDE + textwrap.dedent(DEFECTS["nondeterministic"]))
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    good = runner.invoke(app, ["validate", "mel", "--long-seconds", "60"])
    assert good.exit_code == 0, good.output
    assert "centring" in good.output and "fail" not in good.output
    bad = runner.invoke(app, ["validate", "defective_nondeterministic", "--long-seconds", "60"])
    assert bad.exit_code == 1
    assert "FAILED: determinism" in bad.output
    bad_option = runner.invoke(app, ["validate", "mel", "--precision", "fp16", "--long-seconds", "60"])
    assert bad_option.exit_code == 2 and "fp16" in bad_option.output
    as_option = runner.invoke(app, ["validate", "mel", "--model-option", "precision=bf16", "--long-seconds", "60"])
    assert as_option.exit_code == 2 and "--precision, not --model-option" in as_option.output
    too_short = runner.invoke(app, ["validate", "mel", "--long-seconds", "30"])
    assert too_short.exit_code == 2 and "at least 60 s" in too_short.output
    no_file = runner.invoke(app, ["validate", "atst_frame", "--weights", str(tmp_path / "missing.ckpt")])
    assert no_file.exit_code == 2 and "missing.ckpt does not exist" in no_file.output
    a_folder = runner.invoke(app, ["validate", "defective_nondeterministic", "--weights", str(tmp_path)])
    assert a_folder.exit_code == 2 and "is a directory" in a_folder.output
    ckpt = str(fixtures_dir / "atst_frame_lightning.ckpt")
    usages = (["mel", "--weights", ckpt], ["atst_frame", "--weights", ckpt, "--model-option", "random_weights=true"],
              ["atst_frame", "--model-option", "random_weights=no"])  # what embed and eval refuse, as they do
    for usage in usages:
        refused = runner.invoke(app, ["validate", *usage])
        assert refused.exit_code == 2 and refused.output.startswith("error: "), refused.output
    monkeypatch.delenv("HEAR_ATST_WEIGHTS", raising=False)
    no_weights = runner.invoke(app, ["validate", "hear_atst.atst_frame"])
    assert no_weights.exit_code == 2 and "Get the official checkpoint" in no_weights.output
    usage = runner.invoke(app, ["validate", "--help"], env={"COLUMNS": "200"}).output
    usage = " ".join(usage.replace("│", " ").split())  # rich wraps help text inside a box
    assert f"at least {MIN_LONG_SECONDS:g} s" in usage and f"(default: {LONG_SECONDS:g}," in usage
