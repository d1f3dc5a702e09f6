"""Embedding stage: the HEAR kit's layout file by file, reading the kit's output, resume after SIGKILL, cache keys."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from evaluation.audio_manifest import read_manifest
from evaluation.data import frame_labels
from evaluation.embeddings import (
    CONFIG_FILENAME,
    EmbeddingCacheError,
    ModelSetup,
    embed_task,
    load_task_embeddings,
    plan_batches,
)
from evaluation.runner import resolve_model
from evaluation.taskfolder import TaskFolder
from hear_atst import mel

REPO = Path(__file__).resolve().parents[1]


def kit_row_order(splits: list[str], files: dict[str, list[str]]) -> dict[str, list[str]]:
    """hear_eval.md §3.1: one random.Random(0) shuffles each split's clip list in turn (listed sorted here)."""
    prng = random.Random(0)
    order = {}
    for split in splits:
        names = sorted(files[split])
        prng.shuffle(names)
        order[split] = names
    return order


# Known answer: the first rows of each split's memmap for the spoken-digit small task, computed once from the kit's
# definition (hear_eval.md §3.1) and pinned here, so a change to the row order cannot pass by changing both sides.
FIRST_ROWS = {
    "fold00": ("2030", "88", "708"), "fold01": ("2180", "2168", "506"), "fold02": ("891", "910", "823"),
    "fold03": ("1889", "1082", "394"), "fold04": ("601", "850", "1875"),
}
DIGIT_FILE = "tfds_id_spoken-digit-train-tfrecord-00000-of-00001-{}.wav"
DCASE_FIRST_ROWS = {  # the same for the DCASE 2016 small event task (its rows: every frame of a clip in turn)
    "train": ("test_2_ebr_6_nec_5_poly_1", "test_1_ebr_-6_nec_3_poly_0", "test_3_ebr_6_nec_2_poly_0"),
    "valid": ("test_3_ebr_0_nec_2_poly_0", "dev_1_ebr_6_nec_5_poly_1", "dev_1_ebr_6_nec_4_poly_1"),
    "test": ("test_1_ebr_6_nec_4_poly_1", "test_2_ebr_0_nec_2_poly_0", "test_3_ebr_-6_nec_3_poly_0"),
}


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def mel_setup() -> ModelSetup:
    return resolve_model("mel")


@pytest.fixture(scope="module")
def digit_embeddings(spoken_digit_task: Path, mel_setup: ModelSetup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embed_task(mel_setup, TaskFolder.load(spoken_digit_task), tmp_path_factory.mktemp("emb"), progress=False)


@pytest.fixture(scope="module")
def dcase_embeddings(dcase2016_small_task: Path, mel_setup: ModelSetup,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embed_task(mel_setup, TaskFolder.load(dcase2016_small_task), tmp_path_factory.mktemp("emb"),
                      progress=False)


def test_scene_layout_file_by_file(digit_embeddings: Path, spoken_digit_task: Path):
    assert digit_embeddings.parent.name == "hear_atst.mel"
    assert digit_embeddings.name == spoken_digit_task.name
    metadata = json.loads((spoken_digit_task / "task_metadata.json").read_text())
    splits = metadata["splits"]
    references = {s: json.loads((spoken_digit_task / f"{s}.json").read_text()) for s in splits}
    expected = {"task_metadata.json", "labelvocabulary.csv", CONFIG_FILENAME, "profile.embeddings.json",
                ".done.embeddings", "audio-manifest.jsonl", "clip-durations.json"}
    for split in splits:
        expected |= {f"{split}.json", f"{split}.embeddings.npy", f"{split}.embedding-dimensions.json",
                     f"{split}.target-labels.pkl"}
        expected |= {f"{split}/{name}.{suffix}" for name in references[split]
                     for suffix in ("embedding.npy", "target-labels.json")}
    assert listing(digit_embeddings) == expected
    for name in ("task_metadata.json", "labelvocabulary.csv", *(f"{s}.json" for s in splits)):
        assert (digit_embeddings / name).read_bytes() == (spoken_digit_task / name).read_bytes()
    manifest = [json.loads(line) for line in (digit_embeddings / "audio-manifest.jsonl").read_text().splitlines()]
    clips = sorted(f"{split}/{name}" for split in splits for name in references[split])
    assert [entry["clip"] for entry in manifest] == clips  # one line a clip, sorted
    for entry in manifest:
        wav = spoken_digit_task / "16000" / entry["clip"]
        assert entry["sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()
        assert (entry["size"], entry["mtime_ns"]) == (wav.stat().st_size, wav.stat().st_mtime_ns)

    model = mel.load_model()
    order = kit_row_order(splits, {s: list(r) for s, r in references.items()})
    for split in splits:
        rows = []
        for name in order[split]:
            array = np.load(digit_embeddings / split / f"{name}.embedding.npy")
            assert array.dtype == np.float32 and array.shape == (mel.LogMelBaseline.scene_embedding_size,)
            alone = mel.get_scene_embeddings(torch.from_numpy(sf.read(
                spoken_digit_task / "16000" / split / name, dtype="float32")[0])[None], model)[0].numpy()
            np.testing.assert_allclose(array, alone, atol=1e-5, rtol=0)
            labels = json.loads((digit_embeddings / split / f"{name}.target-labels.json").read_text())
            assert labels == references[split][name]
            rows.append(array)
        dims = json.loads((digit_embeddings / f"{split}.embedding-dimensions.json").read_text())
        assert dims == [len(rows), 128]
        raw = np.fromfile(digit_embeddings / f"{split}.embeddings.npy", dtype=np.float32)  # no header
        np.testing.assert_array_equal(raw.reshape(dims), np.stack(rows))
        pinned = [DIGIT_FILE.format(number) for number in FIRST_ROWS[split]]
        assert order[split][:3] == pinned
        np.testing.assert_array_equal(raw.reshape(dims)[:3], np.stack(
            [np.load(digit_embeddings / split / f"{name}.embedding.npy") for name in pinned]))
        with open(digit_embeddings / f"{split}.target-labels.pkl", "rb") as handle:  # our own file
            assert pickle.load(handle) == [references[split][name] for name in order[split]]


def test_frame_label_rule_at_event_boundaries():
    """start <= t < end: a frame on an event's start has its label, a frame on its end has not; overlapping
    events of one label give it once."""
    events = [{"label": "a", "start": 100.0, "end": 200.0}, {"label": "b", "start": 150.0, "end": 300.0},
              {"label": "a", "start": 180.0, "end": 250.0}]
    times = [99.999, 100.0, 150.0, 199.999, 200.0, 250.0, 300.0]
    assert frame_labels(events, times) == [[], ["a"], ["a", "b"], ["a", "b"], ["b", "a"], ["b"], []]


def test_event_layout_timestamps_and_frame_labels(dcase_embeddings: Path, dcase2016_small_task: Path):
    metadata = json.loads((dcase2016_small_task / "task_metadata.json").read_text())
    splits = metadata["splits"]
    references = {s: json.loads((dcase2016_small_task / f"{s}.json").read_text()) for s in splits}
    order = kit_row_order(splits, {s: list(r) for s, r in references.items()})
    n_tokens = (int(metadata["sample_duration"] * 16000) // 160 + 1) // 4
    for split in splits:
        assert {p.name for p in (dcase_embeddings / split).iterdir()} == {
            f"{name}.{suffix}" for name in references[split]
            for suffix in ("embedding.npy", "target-labels.json", "timestamps.json")}
        rows, pairs, active_frames = [], [], 0
        for name in order[split]:
            stem = dcase_embeddings / split / name
            array = np.load(f"{stem}.embedding.npy")
            times = json.loads(Path(f"{stem}.timestamps.json").read_text())
            labels = json.loads(Path(f"{stem}.target-labels.json").read_text())
            assert array.shape == (n_tokens, 64) and array.dtype == np.float32
            assert times == [15.0 + 40.0 * i for i in range(n_tokens)]
            for t, frame in zip(times, labels, strict=True):
                expected = {e["label"] for e in references[split][name] if e["start"] <= t < e["end"]}
                assert set(frame) == expected and len(frame) == len(expected)
                active_frames += bool(frame)
            rows.append(array)
            pairs += [[f"{split}/{name}", t] for t in times]
        assert active_frames > 0
        matrix = np.concatenate(rows)
        assert json.loads((dcase_embeddings / f"{split}.embedding-dimensions.json").read_text()) == [len(matrix), 64]
        raw = np.fromfile(dcase_embeddings / f"{split}.embeddings.npy", dtype=np.float32)
        np.testing.assert_array_equal(raw.reshape(matrix.shape), matrix)
        assert json.loads((dcase_embeddings / f"{split}.filename-timestamps.json").read_text()) == pairs
        pinned = [f"{stem}.wav" for stem in DCASE_FIRST_ROWS[split]]
        assert order[split][:3] == pinned
        np.testing.assert_array_equal(raw.reshape(matrix.shape)[: 3 * n_tokens], np.concatenate(
            [np.load(dcase_embeddings / split / f"{name}.embedding.npy") for name in pinned]))
    durations = json.loads((dcase_embeddings / "clip-durations.json").read_text())  # the audio's, for PSDS
    wavs = {f"{p.parent.name}/{p.name}": p for p in (dcase2016_small_task / "16000").glob("*/*.wav")}
    assert durations == {clip: sf.info(wav).frames / 16000 for clip, wav in sorted(wavs.items())}
    assert load_task_embeddings(dcase_embeddings).durations == {clip.split("/")[1]: seconds
                                                                for clip, seconds in durations.items()}


def test_reader_gives_rows_in_memmap_order_with_text_labels(digit_embeddings: Path, dcase_embeddings: Path):
    for path in (digit_embeddings, dcase_embeddings):
        task = load_task_embeddings(path)
        for name, split in task.splits.items():
            dims = json.loads((path / f"{name}.embedding-dimensions.json").read_text())
            raw = np.fromfile(path / f"{name}.embeddings.npy", dtype=np.float32).reshape(dims)
            np.testing.assert_array_equal(split.embeddings, raw)
            assert all(isinstance(label, str) for row in split.labels for label in row)
    events = load_task_embeddings(dcase_embeddings)
    stamps = json.loads((dcase_embeddings / "test.filename-timestamps.json").read_text())
    np.testing.assert_array_equal(events.splits["test"].timestamps, [timestamp for _, timestamp in stamps])
    assert set(events.events["test"]) == set(json.loads((dcase_embeddings / "test.json").read_text()))


def _write_kit_folder(root: Path, task: Path, dims: int, event: bool) -> dict[str, dict[str, np.ndarray]]:
    """A task's embeddings in the kit's layout as hear_eval.md §3.1 describes it (np.save per clip, json.dump
    labels/timestamps, glob-order memmap, absolute slugs, pickled labels, an empty .done.embeddings, no config).
    The pickle is garbage on purpose: a reader that unpickles it fails."""
    metadata = json.loads((task / "task_metadata.json").read_text())
    out = root / "hearbaseline.naive" / task.name
    out.mkdir(parents=True)
    for name in ("task_metadata.json", "labelvocabulary.csv", *(f"{s}.json" for s in metadata["splits"])):
        (out / name).write_bytes((task / name).read_bytes())
    rng = np.random.default_rng(7)
    written: dict[str, dict[str, np.ndarray]] = {}
    for split in metadata["splits"]:
        reference = json.loads((task / f"{split}.json").read_text())
        (out / split).mkdir()
        written[split] = {}
        slugs: list[list] = []
        for name in reversed(sorted(reference)):  # the kit's directory-listing order, not ours
            n_frames = 5 + len(name) % 3
            array = rng.standard_normal((n_frames, dims) if event else dims).astype(np.float32)
            np.save(out / split / f"{name}.embedding.npy", array)
            if event:
                times = [25.0 + 50.0 * i for i in range(n_frames)]
                labels = [[e["label"] for e in reference[name] if e["start"] <= t < e["end"]] for t in times]
                (out / split / f"{name}.timestamps.json").write_text(json.dumps(times))
                slugs += [[str(out / split / name), t] for t in times]
            else:
                labels = reference[name]
            (out / split / f"{name}.target-labels.json").write_text(json.dumps(labels))
            written[split][name] = array
        matrix = np.concatenate(list(written[split].values())) if event else np.stack(list(written[split].values()))
        matrix.tofile(out / f"{split}.embeddings.npy")
        (out / f"{split}.embedding-dimensions.json").write_text(json.dumps(list(matrix.shape)))
        (out / f"{split}.target-labels.pkl").write_bytes(b"not a pickle")
        if event:
            (out / f"{split}.filename-timestamps.json").write_text(json.dumps(slugs, indent=4))
    (out / ".done.embeddings").touch()
    return written


@pytest.mark.parametrize("kind", ["scene", "event"])
def test_reader_reads_the_kits_layout(kind: str, spoken_digit_task: Path, dcase2016_small_task: Path,
                                      tmp_path: Path):
    task = spoken_digit_task if kind == "scene" else dcase2016_small_task
    written = _write_kit_folder(tmp_path, task, dims=7, event=kind == "event")
    loaded = load_task_embeddings(tmp_path / "hearbaseline.naive" / task.name)
    for split, arrays in written.items():
        reference = json.loads((task / f"{split}.json").read_text())
        rows = loaded.splits[split]
        if kind == "scene":
            assert sorted(rows.filenames) == sorted(arrays)
            for row, name in enumerate(rows.filenames):
                np.testing.assert_array_equal(rows.embeddings[row], arrays[name])
                assert rows.labels[row] == [str(label) for label in reference[name]]  # ints in the JSON -> text
        else:
            for name, array in arrays.items():
                at = [i for i, f in enumerate(rows.filenames) if f == name]
                np.testing.assert_array_equal(rows.embeddings[at], array)
                np.testing.assert_array_equal(rows.timestamps[at], 25.0 + 50.0 * np.arange(len(array)))
            assert loaded.events[split] == {n: [{**e, "label": str(e["label"])} for e in ev]
                                            for n, ev in reference.items()}
    assert loaded.label_vocabulary == TaskFolder.load(task).label_vocabulary


def test_reader_checks_completeness_and_dimensions(digit_embeddings: Path, tmp_path: Path):
    copy = Path(shutil.copytree(digit_embeddings, tmp_path / "copy"))
    dims = (copy / "fold00.embedding-dimensions.json").read_text()
    (copy / "fold00.embedding-dimensions.json").write_text("[21, 128]")
    with pytest.raises(EmbeddingCacheError, match=r"fold00\.embedding-dimensions\.json"):
        load_task_embeddings(copy)
    (copy / "fold00.embedding-dimensions.json").write_text(dims)
    memmap = copy / "fold00.embeddings.npy"
    memmap.write_bytes(memmap.read_bytes()[:-4])  # a truncated per-split array
    with pytest.raises(EmbeddingCacheError, match=r"fold00\.embeddings\.npy: \d+ bytes, the clips give"):
        load_task_embeddings(copy)
    (copy / ".done.embeddings").unlink()
    with pytest.raises(EmbeddingCacheError, match=r"no \.done\.embeddings"):
        load_task_embeddings(copy)


def test_batches_group_equal_lengths_within_the_audio_budget():
    lengths = {"train": {"a.wav": 16000, "b.wav": 32000, "c.wav": 16000, "d.wav": 16000, "e.wav": 16000 * 200},
               "test": {"x.wav": 16000}}
    batches = plan_batches(lengths, ["train", "test"], 16000, batch_seconds=2.5)
    assert batches == [("train", ["a.wav", "c.wav"]), ("train", ["d.wav"]), ("train", ["b.wav"]),
                       ("train", ["e.wav"]), ("test", ["x.wav"])]


EMBED_SCRIPT = """
import sys
from evaluation.embeddings import embed_task
from evaluation.runner import resolve_model
from evaluation.taskfolder import TaskFolder
note = lambda line: print(line, file=sys.stderr, flush=True)
embed_task(resolve_model("mel"), TaskFolder.load(sys.argv[1]), sys.argv[2], batch_seconds=4.0, progress=False,
           on_start=note)
"""


def test_two_processes_on_one_folder_one_killed_by_sigkill(esc10_task: Path, mel_setup: ModelSetup, tmp_path: Path):
    """A writes, B waits on the folder's lock; A is killed mid-way; B resumes where A stopped (A's recorded clips are
    not redone: a batch killed between its files and its audio records is; A's temporary files are removed) and
    the folder is byte-identical to one written in one go."""
    reference = embed_task(mel_setup, TaskFolder.load(esc10_task), tmp_path / "reference", batch_seconds=4.0,
                           progress=False)
    command = [sys.executable, "-c", EMBED_SCRIPT, str(esc10_task), str(tmp_path / "shared")]
    first = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "shared" / reference.parent.name / reference.name
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if out.is_dir() and len(list(out.glob("fold0*/*.embedding.npy"))) >= 60:
            break
        time.sleep(0.01)
    second = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    waiting = second.stderr.readline()  # B says it waits before A is killed
    assert waiting.startswith("waiting for another hear-atst process that is writing") and str(out) in waiting
    assert second.poll() is None
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    recorded = read_manifest(out)  # a clip counts as done once its audio record follows its files (per batch)
    kept = {path: path.stat().st_mtime_ns for path in out.glob("fold0*/*.embedding.npy")
            if f"{path.parent.name}/{path.name.removesuffix('.embedding.npy')}" in recorded}
    assert 50 <= len(kept) < 400 and not (out / ".done.embeddings").exists()
    orphan = out / "fold00" / f".x.embedding.npy.{first.pid}.abc123.tmp"  # what a kill mid-write leaves
    orphan.write_bytes(b"partial")

    assert second.wait(timeout=600) == 0, second.stderr.read()
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # resumed: A's clips were not redone
    files = listing(reference) - {"profile.embeddings.json"}
    assert listing(out) - {"profile.embeddings.json"} == files  # no temporary files left behind
    for name in sorted(files):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_stale_temp_files_are_removed_and_a_live_writers_kept(tmp_path: Path):
    from hear_atst.atomic import remove_stale_temp_files

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    try:
        live = tmp_path / "a" / f".clip.embedding.npy.{sleeper.pid}.k2j4.tmp"
        dead = tmp_path / "a" / f".clip.embedding.npy.{ended.pid}.k2j4.tmp"
        other = tmp_path / "a" / "someone-elses.tmp"  # not an atomic_write temporary file: never touched
        for path in (live, dead, other):
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"x")
        assert remove_stale_temp_files(tmp_path) == 1
        assert live.exists() and other.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.glob("*/*.embedding.npy")}


def test_changing_one_wav_embeds_exactly_that_clip_again(spoken_digit_task: Path, mel_setup: ModelSetup,
                                                         tmp_path: Path):
    """The cache holds each clip's audio hash: a replaced recording is embedded again (alone), a touched but equal
    file is only hashed again, an emptied embedding file is redone; the score files follow the new audio."""
    task = Path(shutil.copytree(spoken_digit_task, tmp_path / "tasks" / spoken_digit_task.name))
    notes: list[str] = []
    out = embed_task(mel_setup, TaskFolder.load(task), tmp_path / "emb", progress=False)
    before = _mtimes(out)
    names = sorted(json.loads((task / "fold00.json").read_text()))
    changed, touched = task / "16000" / "fold00" / names[0], task / "16000" / "fold00" / names[1]
    audio, rate = sf.read(changed, dtype="int16")
    sf.write(changed, (audio // 2).astype(np.int16), rate, subtype="PCM_16")  # another recording, same length
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes
    assert embed_task(mel_setup, TaskFolder.load(task), tmp_path / "emb", progress=False, on_start=notes.append)
    assert notes[0] == (f"1 of 100 clip(s) of {task.name} changed since they were embedded (audio bytes, or an "
                        "empty or unreadable embedding file): embedding exactly those again")
    after = _mtimes(out)
    assert {name for name in before if before[name] != after[name]} == {f"fold00/{names[0]}.embedding.npy"}
    fresh = mel.get_scene_embeddings(torch.from_numpy(sf.read(changed, dtype="float32")[0])[None],
                                     mel.load_model())[0].numpy()
    np.testing.assert_allclose(np.load(out / "fold00" / f"{names[0]}.embedding.npy"), fresh, atol=1e-5, rtol=0)
    manifest = {json.loads(line)["clip"]: json.loads(line) for line in (out / "audio-manifest.jsonl").open()}
    assert manifest[f"fold00/{names[0]}"]["sha256"] == hashlib.sha256(changed.read_bytes()).hexdigest()
    assert manifest[f"fold00/{names[1]}"]["mtime_ns"] == touched.stat().st_mtime_ns  # the touch was recorded
    row = load_task_embeddings(out).splits["fold00"]
    np.testing.assert_allclose(row.embeddings[row.filenames.index(names[0])], fresh, atol=1e-5, rtol=0)

    notes.clear()  # nothing changed: used as is, nothing hashed
    assert embed_task(mel_setup, TaskFolder.load(task), tmp_path / "emb", progress=False, on_start=notes.append)
    assert notes == [f"using the cached embeddings of {task.name} in {out}"] and _mtimes(out) == after

    (out / "fold01" / f"{sorted(json.loads((task / 'fold01.json').read_text()))[0]}.embedding.npy").write_bytes(b"")
    notes.clear()  # a zero-length embedding file (a crash before fsync existed) is never trusted
    embed_task(mel_setup, TaskFolder.load(task), tmp_path / "emb", progress=False, on_start=notes.append)
    assert notes[0].startswith("1 of 100 clip(s)") and load_task_embeddings(out)


def test_emptied_or_truncated_audio_after_caching_is_an_error_not_the_old_score(
        spoken_digit_task: Path, mel_setup: ModelSetup, tmp_path: Path):
    from evaluation.taskfolder import TaskFolderError

    task = Path(shutil.copytree(spoken_digit_task, tmp_path / "tasks" / spoken_digit_task.name))
    embed_task(mel_setup, TaskFolder.load(task), tmp_path / "emb", progress=False)
    wavs = sorted((task / "16000").glob("*/*.wav"))
    wavs[3].write_bytes(wavs[3].read_bytes()[:100])  # the header promises more than is left
    for wav in wavs[10:]:
        wav.write_bytes(b"")
    with pytest.raises(TaskFolderError) as caught:
        embed_task(mel_setup, TaskFolder.load(task), tmp_path / "emb", progress=False)
    assert f"{wavs[3]}: truncated WAV: the header promises" in str(caught.value)
    assert f"{wavs[10]}: cannot decode audio" in str(caught.value)
    assert len(caught.value.problems) == len(wavs) - 9


def test_embeddings_of_other_model_code_are_made_again(digit_embeddings: Path, spoken_digit_task: Path,
                                                       mel_setup: ModelSetup, tmp_path: Path):
    """A cache whose recorded code hash (or load_model defaults) differs from the installed code is embedded again,
    saying what differs; a cache from a version that recorded no source is too."""
    root = tmp_path / "emb"
    copy = Path(shutil.copytree(digit_embeddings, root / digit_embeddings.parent.name / digit_embeddings.name))
    config = json.loads((copy / CONFIG_FILENAME).read_text())
    assert config["source"] == mel_setup.source_identity and config["source"]["code_sha256"] == hashlib.sha256(b"".join(
        name.encode() + b"\0" + (REPO / (name.replace(".", "/") + ".py")).read_bytes() + b"\0"
        for name in ("hear_atst.frontends.atst_mel", "hear_atst.hear_api", "hear_atst.mel", "hear_atst.registry")
    )).hexdigest()
    for stale, why in (({**config["source"], "code_sha256": "0" * 64}, "with other model code_sha256"),
                       (None, "by a version that recorded no source")):
        (copy / CONFIG_FILENAME).write_text(json.dumps({**config, "source": stale}))
        before, notes = _mtimes(copy), []
        embed_task(mel_setup, TaskFolder.load(spoken_digit_task), root, progress=False, on_start=notes.append)
        assert notes[0] == f"{copy} was embedded {why}: embedding every clip again"
        assert all(_mtimes(copy)[name] != stamp for name, stamp in before.items())
        assert json.loads((copy / CONFIG_FILENAME).read_text())["source"] == mel_setup.source_identity
        for name in listing(digit_embeddings) - {"profile.embeddings.json"}:
            assert (copy / name).read_bytes() == (digit_embeddings / name).read_bytes(), name


def test_cache_key_holds_weights_hash_options_and_precision(fixtures_dir: Path):
    weights = fixtures_dir / "atst_frame_lightning.ckpt"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    plain = resolve_model("atst_frame", weights)
    assert plain.weights_sha256 == digest
    assert plain.embeddings_dirname == f"hear_atst.atst_frame-weights={digest[:12]}"
    blocks = resolve_model("atst_frame", weights, {"blocks": 1}, precision="bf16")
    assert blocks.embeddings_dirname == f"hear_atst.atst_frame-blocks=1-precision=bf16-weights={digest[:12]}"
    assert blocks.model_id == f"atst_frame-blocks=1-precision=bf16-weights={digest[:8]}"
    assert resolve_model("mel").model_id == "mel"  # no weights file, no hash
    listed = resolve_model("atst_frame", weights, {"blocks": [11, 12]})
    assert listed.embeddings_dirname == f"hear_atst.atst_frame-blocks=11_12-weights={digest[:12]}"
    assert len({plain.embeddings_dirname, blocks.embeddings_dirname, listed.embeddings_dirname}) == 3


def test_a_cache_of_another_identity_is_never_reused(digit_embeddings: Path, spoken_digit_task: Path,
                                                     mel_setup: ModelSetup, tmp_path: Path):
    root = tmp_path / "emb"
    copy = Path(shutil.copytree(digit_embeddings, root / digit_embeddings.parent.name / digit_embeddings.name))
    folder = TaskFolder.load(spoken_digit_task)
    stamp = (copy / "fold00.embeddings.npy").stat().st_mtime_ns
    assert embed_task(mel_setup, folder, root, progress=False) == copy  # same identity: reused as is
    assert (copy / "fold00.embeddings.npy").stat().st_mtime_ns == stamp

    config = json.loads((copy / CONFIG_FILENAME).read_text())
    (copy / CONFIG_FILENAME).write_text(json.dumps({**config, "device": "cuda"}))  # complete: reused anywhere
    assert embed_task(mel_setup, folder, root, progress=False) == copy
    (copy / CONFIG_FILENAME).write_text(json.dumps({**config, "weights_sha256": "0" * 64}))
    with pytest.raises(EmbeddingCacheError, match="weights_sha256: cached '0000"):
        embed_task(mel_setup, folder, root, progress=False)
    (copy / ".done.embeddings").unlink()  # an unfinished folder of another identity is not resumed either
    with pytest.raises(EmbeddingCacheError, match="different model or task"):
        embed_task(mel_setup, folder, root, progress=False)
    (copy / CONFIG_FILENAME).write_text(json.dumps({**config, "device": "cuda"}))  # nor one begun on another device
    with pytest.raises(EmbeddingCacheError, match="begun on cuda; finishing it on cpu would mix"):
        embed_task(mel_setup, folder, root, progress=False)
    (copy / CONFIG_FILENAME).write_text(json.dumps({**config, "device": "cpu:0"}))  # the same device, spelt out
    assert embed_task(mel_setup, folder, root, progress=False) == copy
    (copy / CONFIG_FILENAME).unlink()  # a folder without our config (e.g. the kit's) is not touched
    with pytest.raises(EmbeddingCacheError, match="not written by hear-atst"):
        embed_task(mel_setup, folder, root, progress=False)
    (copy / ".done.embeddings").touch()  # ... complete or not
    with pytest.raises(EmbeddingCacheError, match="not written by hear-atst"):
        embed_task(mel_setup, folder, root, progress=False)


def test_a_task_folder_rebuilt_under_the_same_name_does_not_reuse_the_cache(
        digit_embeddings: Path, spoken_digit_task: Path, mel_setup: ModelSetup, tmp_path: Path):
    """Same folder name, one label changed in a split file: the cached embeddings are refused, naming the hash."""
    root = tmp_path / "emb"
    Path(shutil.copytree(digit_embeddings, root / digit_embeddings.parent.name / digit_embeddings.name))
    rebuilt = Path(shutil.copytree(spoken_digit_task, tmp_path / "tasks" / spoken_digit_task.name))
    assert embed_task(mel_setup, TaskFolder.load(rebuilt), root, progress=False)  # identical copy: reused
    split = rebuilt / "fold00.json"
    labels = json.loads(split.read_text())
    first = sorted(labels)[0]
    labels[first] = [next(v for v in ("0", "1") if [v] != labels[first])]
    split.write_text(json.dumps(labels))
    with pytest.raises(EmbeddingCacheError, match=r"task_files_sha256: cached '[0-9a-f]{64}', now '[0-9a-f]{64}'"):
        embed_task(mel_setup, TaskFolder.load(rebuilt), root, progress=False)


def test_model_options_and_weights_name_separate_caches(spoken_digit_task: Path, fixtures_dir: Path,
                                                        tmp_path: Path):
    """``--model-option blocks=N`` reaches load_model and, with the weights' hash, names the cache folder."""
    from typer.testing import CliRunner

    from hear_atst.cli import app

    weights = fixtures_dir / "atst_frame_lightning.ckpt"  # reduced ATST-Frame, 2 blocks
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    sizes = {}
    for blocks in (1, 2):
        result = CliRunner().invoke(app, [
            "embed", "--model", "atst_frame", "--weights", str(weights), "--model-option", f"blocks={blocks}",
            "--task", "spoken_digit", "--tasks-dir", str(spoken_digit_task.parent), "--embeddings-dir", str(tmp_path)])
        assert result.exit_code == 0, result.stderr
        out = tmp_path / f"hear_atst.atst_frame-blocks={blocks}-weights={digest}" / spoken_digit_task.name
        config = json.loads((out / CONFIG_FILENAME).read_text())
        assert config["options"] == {"blocks": blocks} and config["weights_sha256"].startswith(digest)
        sizes[blocks] = json.loads((out / "fold00.embedding-dimensions.json").read_text())
    assert sizes[2] == [20, 2 * sizes[1][1]]
