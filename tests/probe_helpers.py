"""Real-audio problems for the probe tests: log-mel features of ESC-10 clips and of DCASE 2016 scenes.

Features are computed here with numpy/scipy (a 40-band log-mel at a 40 ms hop), so the probe tests depend
on no encoder. ESC-10 gives a 5-fold scene task (400 clips, 10 classes); the DCASE 2016 task 2 dev scenes,
rebuilt by ``tools/make_dcase2016_layout.py`` (30 s prefixes at 16 kHz), give a train/valid/test event task.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from evaluation.data import SplitEmbeddings, TaskEmbeddings, frame_labels

SR = 16000
HOP_MS = 40
N_FFT = 1024
N_MELS = 40


def _mel_filters() -> np.ndarray:
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(np.array(60.0)), hz_to_mel(np.array(7800.0)), N_MELS + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SR)
    filters = np.zeros((N_MELS, len(bins)))
    for m in range(N_MELS):
        lo, mid, hi = hz[m], hz[m + 1], hz[m + 2]
        filters[m] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return filters


_FILTERS = _mel_filters()


def log_mel(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames [T, 40] (centred frames every 40 ms) and their timestamps in ms."""
    hop = SR * HOP_MS // 1000
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2))
    n_frames = 1 + (len(padded) - N_FFT) // hop
    index = np.arange(N_FFT)[None, :] + hop * np.arange(n_frames)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[index] * np.hanning(N_FFT), axis=1)) ** 2
    frames = np.log(spectrum @ _FILTERS.T + 1e-6).astype(np.float32)
    return frames, np.arange(n_frames, dtype=np.float64) * HOP_MS


def _read_mono(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return audio if rate == SR else soxr.resample(audio, rate, SR).astype(np.float32)


@functools.cache
def esc10_task(data_dir: Path) -> TaskEmbeddings:
    """Half of ESC-10 (every other clip: 200 clips, 40 per fold) as the kit's 5-fold scene task;
    embedding = mean and std of the clip's log-mel (80 dims).

    Cached per process: treat the result as read-only.
    """
    clips = sorted((data_dir / "esc10").glob("*/*.ogg"))[::2]
    labels = sorted({clip.parent.name.split(" - ", 1)[1] for clip in clips})
    rows: dict[str, tuple[list, list, list]] = {f"fold0{k}": ([], [], []) for k in range(5)}
    for clip in clips:
        frames, _ = log_mel(_read_mono(clip)[: 5 * SR])
        fold = f"fold0{int(clip.name.split('-')[0]) - 1}"
        rows[fold][0].append(np.concatenate([frames.mean(axis=0), frames.std(axis=0)]))
        rows[fold][1].append([clip.parent.name.split(" - ", 1)[1]])
        rows[fold][2].append(clip.name.replace(".ogg", ".wav"))
    splits = {name: SplitEmbeddings(name, np.stack(x).astype(np.float32), y, f) for name, (x, y, f) in rows.items()}
    metadata = {"task_name": "esc10", "embedding_type": "scene", "prediction_type": "multiclass",
                "split_mode": "presplit_kfold", "splits": list(splits),
                "evaluation": ["top1_acc", "mAP", "d_prime", "aucroc"]}
    return TaskEmbeddings(metadata, labels, splits)


def dcase_scenes(tools_dir: Path, out_dir: Path) -> Path:
    """Rebuild the 18 DCASE 2016 dev scenes (30 s, 16 kHz) with the shared layout tool; returns the dev dir."""
    dev = out_dir / "dcase2016_task2_train_dev" / "dcase2016_task2_dev"
    if not dev.exists():
        subprocess.run([sys.executable, str(tools_dir / "make_dcase2016_layout.py"), str(out_dir), "--rate", "16000",
                        "--duration-sec", "30", "--scenes", "dev"], check=True, capture_output=True)
    return dev


def dcase_task(dev_dir: Path) -> TaskEmbeddings:
    """The dev scenes as a trainvaltest event task (10/4/4 scenes); embedding = log-mel with +-2 frames."""
    stems = sorted(p.stem for p in (dev_dir / "annotation").glob("*.txt"))
    assignment = {"valid": stems[0::9] + stems[4::9], "test": stems[2::9] + stems[7::9]}
    assignment["train"] = [s for s in stems if s not in assignment["valid"] + assignment["test"]]
    labels: set[str] = set()
    splits, events = {}, {}
    for split, names in assignment.items():
        xs, ys, files, times = [], [], [], []
        events[split] = {}
        for stem in names:
            frames, stamps = log_mel(_read_mono(dev_dir / "sound" / f"{stem}.wav"))
            context = np.concatenate([np.roll(frames, shift, axis=0) for shift in (-2, -1, 0, 1, 2)], axis=1)
            file_events = []
            for line in (dev_dir / "annotation" / f"{stem}.txt").read_text().splitlines():
                onset, offset, label = line.split("\t")
                file_events.append({"label": label, "start": float(onset) * 1000, "end": float(offset) * 1000})
                labels.add(label)
            events[split][f"{stem}.wav"] = file_events
            xs.append(context)
            ys.extend(frame_labels(file_events, stamps))
            files.extend([f"{stem}.wav"] * len(stamps))
            times.append(stamps)
        splits[split] = SplitEmbeddings(split, np.concatenate(xs).astype(np.float32), ys, files, np.concatenate(times))
    metadata = {"task_name": "dcase2016_task2", "embedding_type": "event", "prediction_type": "multilabel",
                "split_mode": "trainvaltest", "splits": ["train", "valid", "test"], "sample_duration": 30.0,
                "evaluation": ["event_onset_200ms_fms", "segment_1s_er"]}
    return TaskEmbeddings(metadata, sorted(labels), splits, events)


def least_squares_probabilities(task: TaskEmbeddings, train: str, test: str) -> np.ndarray:
    """Real frame predictions for scorer tests: a least-squares linear fit of the targets, clipped to [0, 1]."""
    index = {label: i for i, label in enumerate(task.label_vocabulary)}

    def targets(split: SplitEmbeddings) -> np.ndarray:
        y = np.zeros((len(split.labels), len(index)))
        for row, labels in enumerate(split.labels):
            y[row, [index[label] for label in labels]] = 1.0
        return y

    x_train = np.hstack([task.splits[train].embeddings, np.ones((len(task.splits[train].labels), 1))])
    weights = np.linalg.lstsq(x_train, targets(task.splits[train]), rcond=None)[0]
    x_test = np.hstack([task.splits[test].embeddings, np.ones((len(task.splits[test].labels), 1))])
    return np.clip(x_test @ weights, 0.0, 1.0)
