"""A user's own model: a HEAR module from PyPI (hearbaseline), a module file, an encoder class, a model in memory;
the pre-flight check, the model's own exceptions, options, precision, and foreign-model identity."""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hear_atst
from evaluation.leaderboard.aggregate import collect_runs
from evaluation.runner import resolve_model
from hear_atst.checkpoints import sha256_file
from hear_atst.cli import app
from hear_atst.foreign import import_file
from hear_atst.model_calls import ModelCheckError
from hear_atst.registry import model_options
from tasks.audio import read_audio, write_wav_pcm16

naive = importlib.import_module("hearbaseline.naive")  # installed by scripts/install.sh (no pinned dependencies)

SOURCE_RATE = 16000

TINY_HEAR = '''"""A tiny HEAR module: 25 ms frames of raw audio through a fixed random projection."""
import torch

HOP = 400  # samples: 25 ms at 16 kHz
SEED = 0


class Tiny(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = timestamp_embedding_size = 8

    def __init__(self, scale):
        super().__init__()
        weights = torch.randn(HOP, 8, generator=torch.Generator().manual_seed(SEED)) * scale
        self.projection = torch.nn.Parameter(weights)


def load_model(model_file_path="", *, scale=1.0):
    model = Tiny(scale)
    if model_file_path:
        model.load_state_dict(torch.load(model_file_path))
    return model


def get_timestamp_embeddings(audio, model):
    n = audio.shape[1] // HOP
    frames = audio[:, : n * HOP].reshape(audio.shape[0], n, HOP)
    stamps = (torch.arange(n) * 25.0 + 12.5).expand(audio.shape[0], n).float()
    return frames @ model.projection, stamps


def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)
'''

TINY_ENCODER = '''"""A tiny frame encoder: 20 ms frames of raw audio through a linear layer, at most 1 s a call."""
import torch


class TinyEncoder(torch.nn.Module):
    sample_rate = 16000
    embedding_size = 6
    hop_ms = 20.0
    max_samples = 16000

    def __init__(self, weights=None, gain=1.0):
        super().__init__()
        self.projection = torch.nn.Linear(320, 6)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            self.projection.weight.copy_(torch.randn(6, 320, generator=generator) * 0.1)
            self.projection.bias.zero_()
        if weights:
            self.load_state_dict(torch.load(weights))
        self.gain = gain

    def forward(self, audio):
        n = audio.shape[1] // 320
        return self.projection(audio[:, : n * 320].reshape(audio.shape[0], n, 320)) * self.gain
'''


def tiny_hear(old: str, new: str) -> str:
    """:data:`TINY_HEAR` with ``old`` (which it must hold) replaced by ``new``."""
    assert old in TINY_HEAR, old
    return TINY_HEAR.replace(old, new)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def write_module(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def subset_task(source: Path, dest: Path, per_split: int | None = None, seconds: float | None = None) -> Path:
    """A copy of a prepared task folder (its 16 kHz audio only): the first ``per_split`` clips of each split by
    name, each cut to its first ``seconds``."""
    dest.mkdir(parents=True)
    for name in ("task_metadata.json", "labelvocabulary.csv"):
        shutil.copy(source / name, dest / name)
    metadata = json.loads((source / "task_metadata.json").read_text())
    for split in metadata["splits"]:
        labels = json.loads((source / f"{split}.json").read_text())
        kept = {name: labels[name] for name in sorted(labels)[:per_split]}
        (dest / f"{split}.json").write_text(json.dumps(kept))
        for name in kept:
            audio, rate = read_audio(source / str(SOURCE_RATE) / split / name)
            write_wav_pcm16(dest / str(SOURCE_RATE) / split / name,
                            audio if seconds is None else audio[: int(seconds * rate)], rate)
    return dest


def embeddings_dir_of(root: Path) -> Path:
    """The one task folder written under an embeddings root."""
    (done,) = root.glob("*/*/.done.embeddings")
    return done.parent


def clips(task: Path, rate: int) -> list[tuple[str, str, np.ndarray]]:
    """``(split, file, audio)`` of every clip of a task at ``rate`` (after the harness resampled it)."""
    metadata = json.loads((task / "task_metadata.json").read_text())
    return [(split, name, read_audio(task / str(rate) / split / name)[0]) for split in metadata["splits"]
            for name in sorted(json.loads((task / f"{split}.json").read_text()))]


@pytest.fixture(scope="module")
def digits(spoken_digit_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spoken digits, 6 clips of 0.56 s in each of 5 folds: a copy, since models at 44.1 kHz resample it in place."""
    return subset_task(spoken_digit_task, tmp_path_factory.mktemp("digits") / spoken_digit_task.name, per_split=6)


@pytest.fixture(scope="module")
def dcase_short(dcase2016_small_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An event task: two DCASE 2016 scenes a split, their first 2.5 s."""
    return subset_task(dcase2016_small_task, tmp_path_factory.mktemp("dcase") / dcase2016_small_task.name,
                       per_split=2, seconds=2.5)


def test_hearbaseline_naive_eval_writes_what_its_own_functions_return(digits: Path, tmp_path: Path):
    code, stdout, stderr = invoke("eval", "--model", "hearbaseline.naive", "--task", str(digits.name), "--tasks-dir",
                                  str(digits.parent), "--embeddings-dir", str(tmp_path / "emb"), "--results-dir",
                                  str(tmp_path / "res"), "--protocol", "linear", "--max-epochs", "2")
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1].startswith("spoken_digit top1_acc = ")
    version = "2021.1.1"
    out = embeddings_dir_of(tmp_path / "emb")
    assert out.parent.name == f"hearbaseline.naive-hearbaseline={version}"
    config = json.loads((out / "embedding-config.json").read_text())
    assert config["source"] == {"kind": "hear-module", "distribution": "hearbaseline", "version": version}
    (results_path,) = (tmp_path / "res").glob("*/*/*/results.json")
    results = json.loads(results_path.read_text())
    assert results["model"]["id"] == f"hearbaseline.naive-hearbaseline={version}"
    assert results["model"]["source"] == config["source"]

    model = naive.load_model()
    for split, name, audio in clips(digits, 44100):
        direct = naive.get_scene_embeddings(torch.from_numpy(audio)[None], model)[0].numpy()
        written = np.load(out / split / f"{name}.embedding.npy")
        assert written.dtype == np.float32 and written.shape == (4096,)
        np.testing.assert_allclose(written, direct, rtol=1e-5, atol=1e-5 * np.abs(direct).max(), err_msg=name)

    # The same model loaded in memory, through the Python API: the same embeddings, the same scores.
    outcome = hear_atst.evaluate(naive.load_model(), digits, embeddings_dir=tmp_path / "emb2",
                                 results_dir=tmp_path / "res2", protocol="linear", max_epochs=2, quiet=True)
    assert outcome.results["model"]["source"]["kind"] == "in-memory"
    assert outcome.results["model"]["id"].startswith(f"hearbaseline.naive-hearbaseline={version}-state=")
    assert outcome.results["score"] == results["score"]
    memory_dir = embeddings_dir_of(tmp_path / "emb2")
    for split in ("fold00", "fold04"):
        assert (memory_dir / f"{split}.embeddings.npy").read_bytes() == (out / f"{split}.embeddings.npy").read_bytes()


@pytest.mark.parametrize("module, size", [
    ("hearbaseline.naive", 4096), pytest.param("hearbaseline.vqt", 540, marks=pytest.mark.slow)])  # vqt: ~10 s
def test_hearbaseline_event_embeddings_and_timestamps_are_its_own(module: str, size: int, dcase_short: Path,
                                                                  tmp_path: Path):
    code, _, stderr = invoke("embed", "--model", module, "--task", dcase_short.name, "--tasks-dir",
                             str(dcase_short.parent), "--embeddings-dir", str(tmp_path))
    assert code == 0, stderr
    out = embeddings_dir_of(tmp_path)
    hear_module = __import__(module, fromlist=["load_model"])
    model = hear_module.load_model()
    for split, name, audio in clips(dcase_short, 44100):
        embeddings, stamps = hear_module.get_timestamp_embeddings(torch.from_numpy(audio)[None], model)
        written = np.load(out / split / f"{name}.embedding.npy")
        assert written.shape == (stamps.shape[1], size)
        np.testing.assert_allclose(written, embeddings[0].numpy(), rtol=1e-5,
                                   atol=1e-5 * float(embeddings.abs().max()), err_msg=name)
        assert json.loads((out / split / f"{name}.timestamps.json").read_text()) == stamps[0].tolist()


def test_module_files_of_one_name_never_share_folders_and_are_two_leaderboard_rows(digits: Path, tmp_path: Path):
    first = write_module(tmp_path / "a", "tiny.py", TINY_HEAR)
    second = write_module(tmp_path / "b", "tiny.py", tiny_hear("SEED = 0", "SEED = 1"))
    common = ["--task", digits.name, "--tasks-dir", str(digits.parent), "--embeddings-dir", str(tmp_path / "emb"),
              "--results-dir", str(tmp_path / "res"), "--protocol", "linear", "--max-epochs", "1"]
    for path in (first, second):
        code, _, stderr = invoke("eval", "--model", str(path), *common)
        assert code == 0, stderr
    hashes = [sha256_file(path) for path in (first, second)]
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == sorted(f"tiny-sha256={h[:12]}" for h in hashes)
    runs = collect_runs(tmp_path / "res")
    assert sorted(runs["model"]) == sorted(f"tiny-sha256={h[:8]}" for h in hashes)
    assert list(runs["model_name"]) == ["tiny", "tiny"]

    # The file as written, clip by clip: the module's own function on the same audio.
    module = import_file(first, hashes[0])
    model = module.load_model()
    out = tmp_path / "emb" / f"tiny-sha256={hashes[0][:12]}" / digits.name
    for split, name, audio in clips(digits, SOURCE_RATE)[:10]:
        direct = module.get_scene_embeddings(torch.from_numpy(audio)[None], model)[0].detach().numpy()
        np.testing.assert_allclose(np.load(out / split / f"{name}.embedding.npy"), direct, rtol=1e-6, atol=1e-6)


def test_encoder_class_from_a_file_is_wrapped_into_the_hear_api(dcase_short: Path, tmp_path: Path):
    path = write_module(tmp_path / "models", "tiny_encoder.py", TINY_ENCODER)
    module = import_file(path, sha256_file(path))
    weights = tmp_path / "encoder.pt"
    trained = module.TinyEncoder()
    with torch.no_grad():
        trained.projection.bias.fill_(0.5)
    torch.save(trained.state_dict(), weights)
    code, _, stderr = invoke("embed", "--model", f"{path}:TinyEncoder", "--weights", str(weights),
                             "--model-options", '{"gain": 2.0}', "--task", dcase_short.name,
                             "--tasks-dir", str(dcase_short.parent), "--embeddings-dir", str(tmp_path / "emb"))
    assert code == 0, stderr
    out = embeddings_dir_of(tmp_path / "emb")
    assert out.parent.name.startswith("tiny_encoder.TinyEncoder-gain=2.0-weights=")
    encoder = module.TinyEncoder(weights=str(weights), gain=2.0)
    for split, name, audio in clips(dcase_short, SOURCE_RATE):
        assert len(audio) == 40000  # 2.5 s: windows of 1 s, 1 s and 0.5 s
        with torch.no_grad():
            frames = torch.cat([encoder(torch.from_numpy(audio[start: start + 16000])[None])
                                for start in range(0, len(audio), 16000)], dim=1)[0]
        written = np.load(out / split / f"{name}.embedding.npy")
        np.testing.assert_allclose(written, frames.numpy(), rtol=1e-6, atol=1e-6)
        assert json.loads((out / split / f"{name}.timestamps.json").read_text()) == [10.0 + 20.0 * i
                                                                                    for i in range(125)]


def test_encoder_in_memory_matches_the_cli_files(digits: Path, tmp_path: Path):
    path = write_module(tmp_path / "models", "tiny_encoder.py", TINY_ENCODER)
    common = {"embeddings_dir": tmp_path / "emb", "results_dir": tmp_path / "res", "protocol": "linear",
              "max_epochs": 1, "quiet": True}
    from_file = hear_atst.evaluate(f"{path}:TinyEncoder", digits, **common)
    module = import_file(path, sha256_file(path))
    in_memory = hear_atst.evaluate(module.TinyEncoder(), digits, **common)
    assert in_memory.results["score"] == from_file.results["score"]
    assert in_memory.results["model"]["id"] != from_file.results["model"]["id"]
    assert in_memory.results_path.is_file() and in_memory.predicted_scores_path.is_file()
    folders = [Path(json.loads(o.predicted_scores_path.read_text())["embedding_path"]) for o in (from_file, in_memory)]
    for split in json.loads((digits / "task_metadata.json").read_text())["splits"]:
        name = f"{split}.embeddings.npy"
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


@pytest.mark.parametrize("variant, expected", [
    (tiny_hear("    return model\n", "    return _read_checkpoint()\n\n\ndef _read_checkpoint():\n"
                       "    raise RuntimeError('checkpoint format not understood')\n"),
     "error: the model raised RuntimeError: checkpoint format not understood"),
    (tiny_hear("return frames @ model.projection, stamps",
                       "return (frames @ model.projection).transpose(1, 2), stamps"),
     "error: broken: get_timestamp_embeddings returned embeddings (2, 8, 60) and timestamps (2, 60) for 2 clips, "
     "expected (2, T, 8) (timestamp_embedding_size) and (2, T) with T >= 1"),
    (tiny_hear("* 25.0 + 12.5", "* 25.0 + 1000.0"),
     "error: broken: get_timestamp_embeddings returned timestamps outside the audio: 1000 to 2475 ms for a 1500 ms "
     "clip (timestamps are frame centres in milliseconds, 0 <= t <= duration)"),
    (tiny_hear("    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)",
                       "    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)[:1].expand(len(audio), 8)"),
     "error: broken: get_scene_embeddings returned the same embedding for two different clips (noise and a tone)"),
])
def test_a_broken_model_fails_the_preflight_check_in_one_message(variant: str, expected: str, dcase_short: Path,
                                                                 tmp_path: Path):
    path = write_module(tmp_path, "broken.py", variant)
    code, _, stderr = invoke("embed", "--model", str(path), "--task", dcase_short.name, "--tasks-dir",
                             str(dcase_short.parent), "--embeddings-dir", str(tmp_path / "emb"))
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines[0] == expected, stderr
    if "raised" in expected:  # a short traceback: the model's own frames, the raising one last
        calls = ("    return _read_checkpoint()", "    raise RuntimeError('checkpoint format not understood')")
        at = [variant.splitlines().index(call) + 1 for call in calls]
        frames = [line for line in lines[1:] if line.strip(" ^~")]  # Python's carets left out
        assert frames == [f'  File "{path.resolve()}", line {at[0]}, in load_model', calls[0],
                          f'  File "{path.resolve()}", line {at[1]}, in _read_checkpoint', calls[1]]
    else:
        assert len(lines) == 1
    assert not list((tmp_path / "emb").glob("*/*/*.embedding.npy"))


def test_options_weights_and_precision_of_a_module_without_options(dcase_short: Path, tmp_path: Path):
    path = write_module(tmp_path, "plain.py", tiny_hear('def load_model(model_file_path="", *, scale=1.0):\n'
                                                        "    model = Tiny(scale)", "def load_model():\n"
                                                        "    model_file_path = None\n    model = Tiny(1.0)"))
    task = ["--task", dcase_short.name, "--tasks-dir", str(dcase_short.parent), "--embeddings-dir", str(tmp_path / "e")]
    code, _, stderr = invoke("embed", "--model", str(path), "--model-option", "scale=2", *task)
    assert (code, stderr.strip()) == (2, "error: model plain has no option scale: plain.load_model takes options: none")
    code, _, stderr = invoke("embed", "--model", str(path), "--weights", str(path), *task)
    assert (code, stderr.strip()) == (2, f"error: --weights {path}: plain.load_model takes no weights file argument")
    code, _, stderr = invoke("embed", "--model", str(path), "--model-options", "[1]", *task)
    assert (code, stderr.strip()) == (2, "error: --model-options '[1]': expected a JSON object such as "
                                         "'{\"blocks\": 1}'")
    code, _, stderr = invoke("embed", "--model", str(path), "--precision", "bf16", *task)
    assert code == 0, stderr
    assert "plain takes no precision argument: its calls run under bf16 autocast" in stderr
    out = embeddings_dir_of(tmp_path / "e")
    assert out.parent.name.startswith("plain-precision=bf16-sha256=")
    assert np.load(next(out.glob("test/*.embedding.npy"))).dtype == np.float32


def test_weights_options_and_precision_reach_a_hear_modules_load_model(tmp_path: Path):
    path = write_module(tmp_path, "tiny.py", TINY_HEAR)
    weights = tmp_path / "tiny.pt"
    torch.save({"projection": torch.ones(400, 8)}, weights)
    setup = resolve_model(str(path), weights=weights, options={"scale": 2.0})
    assert setup.model_id == f"tiny-scale=2.0-weights={sha256_file(weights)[:8]}-sha256={sha256_file(path)[:8]}"
    api, model = setup.load()
    assert torch.equal(model.projection, torch.ones(400, 8))
    assert not api.autocast
    # A load_model with a precision parameter gets --precision (its calls run without autocast); others never do.
    taking = write_module(tmp_path, "taking.py", tiny_hear(
        '*, scale=1.0):\n    model = Tiny(scale)', '*, scale=1.0, precision="fp32"):\n    model = Tiny(scale)\n'
        '    model.precision = precision'))
    setup = resolve_model(str(taking), precision="bf16")
    api, model = setup.load()
    assert (model.precision, api.autocast) == ("bf16", False)
    assert setup.source.precision_note("bf16") == "taking: precision='bf16' passed to taking.load_model"
    api, model = resolve_model(str(path), precision="bf16").load()
    assert api.autocast and not hasattr(model, "precision")


def test_a_named_model_travels_to_another_process_by_its_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write_module(tmp_path / "models", "tiny_encoder.py", TINY_ENCODER)
    monkeypatch.chdir(tmp_path)
    setup = resolve_model("models/tiny_encoder.py:TinyEncoder", options={"gain": 3.0})
    monkeypatch.chdir(path.parent)  # a worker may start elsewhere: the file is found by its absolute path
    copy = pickle.loads(pickle.dumps(setup))
    assert (copy.model_id, copy.embeddings_dirname, copy.options) == (setup.model_id, setup.embeddings_dirname,
                                                                       {"gain": 3.0})
    assert copy.source.identity == setup.source.identity and copy.source.reference == f"{path}:TinyEncoder"
    assert copy.load()[1].encoder.gain == 3.0
    with pytest.raises(TypeError, match="a model object in memory cannot be sent to another process"):
        pickle.dumps(resolve_model(copy.source.cls()))


def test_model_options_json_and_pairs_combine():
    assert model_options(["b=2"], '{"a": [1, 2]}') == {"a": [1, 2], "b": 2}
    with pytest.raises(ValueError, match="model option a given by both --model-options and --model-option"):
        model_options(["a=1"], '{"a": 2}')
    with pytest.raises(ValueError, match="not valid JSON"):
        model_options(None, "{a: 1}")


def test_model_references_resolve_or_fail_in_one_line(tmp_path: Path):
    assert resolve_model("hear_atst.mel").model_id == "mel"  # a registered model's module path is that model
    setup = resolve_model("hearbaseline.naive")
    assert (setup.name, setup.module, setup.model_id) == ("hearbaseline.naive", "hearbaseline.naive",
                                                          "hearbaseline.naive-hearbaseline=2021.1.1")
    for reference, message in (
        ("nope_model", "unknown model 'nope_model'; known models: atst_frame"),
        ("hearbaseline.nope", "unknown model 'hearbaseline.nope'; known models: "),
        ("hearbaseline.util", "hearbaseline.util is not a HEAR module: it lacks load_model, get_scene_embeddings"),
        ("hearbaseline.naive:Nope", "--model hearbaseline.naive:Nope: hearbaseline.naive has no torch.nn.Module class "
                                    "Nope (its classes: RandomProjectionMelEmbedding)"),
        (str(tmp_path / "missing.py"), f"--model {tmp_path / 'missing.py'}: {tmp_path / 'missing.py'} does not exist"),
    ):
        with pytest.raises((LookupError, ValueError)) as caught:
            resolve_model(reference)
        assert str(caught.value.args[0]).startswith(message), caught.value
    with pytest.raises(ModelCheckError, match="the encoder contract needs a positive number"):
        path = write_module(tmp_path, "nohop.py", TINY_ENCODER.replace("    hop_ms = 20.0\n", ""))
        resolve_model(f"{path}:TinyEncoder").load()


def test_validate_takes_an_encoder_file(tmp_path: Path):
    path = write_module(tmp_path, "tiny_encoder.py", TINY_ENCODER)
    code, stdout, stderr = invoke("validate", f"{path}:TinyEncoder", "--long-seconds", "60")
    assert code == 0, stdout + stderr
    assert "centring" in stdout and "fail" not in stdout


def test_import_hear_atst_stays_light():
    import subprocess

    code = "import sys, hear_atst; print(any(m in sys.modules for m in ('torch', 'evaluation.runner')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
