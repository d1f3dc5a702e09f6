"""The HEAR kit's probe protocol run one configuration at a time, written plainly: the reference that
``evaluation.protocol`` (which trains the whole grid as one batched bank) is measured and checked against.

For every grid point, a ``torch.nn.Sequential`` head (the kit's FullyConnectedPrediction) with ``torch.optim.Adam``,
batches in the stored order (the kit never shuffles), validation every ``check_val_every_n_epoch`` epochs computing
every score of the task as the kit's ``log_scores`` does (events: frames regrouped per file through per-timestamp
dicts, each post-processing setting scored with sed_eval, then all scores with sed_eval), ModelCheckpoint /
EarlyStopping semantics, then the best point retrained on the other folds and tested (hear_eval.md, the kit's
protocol). Used by ``benchmarks/bench_probes.py`` and ``benchmarks/probe_epochs.py``; nothing in the package calls it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.ndimage import median_filter

from evaluation.data import TaskEmbeddings
from evaluation.probes.grid import sample_grid
from evaluation.protocol import fold_rotation
from evaluation.scores import get_score, sed_eval_scores


def kit_head(conf: dict[str, Any], n_in: int, n_out: int) -> torch.nn.Sequential:
    init = getattr(torch.nn.init, conf["initialization"])
    layers: list[torch.nn.Module] = []
    current, activation = n_in, "linear"
    for _ in range(conf["hidden_layers"]):
        linear = torch.nn.Linear(current, conf["hidden_dim"])
        init(linear.weight, gain=torch.nn.init.calculate_gain(activation))
        layers += [linear, torch.nn.BatchNorm1d(conf["hidden_dim"]), torch.nn.Dropout(conf["dropout"]),
                   torch.nn.ReLU()]
        current, activation = conf["hidden_dim"], "relu"
    out = torch.nn.Linear(current, n_out)
    init(out.weight, gain=torch.nn.init.calculate_gain(activation))
    return torch.nn.Sequential(*layers, out)


def kit_events(predictions: np.ndarray, filenames: list[str], timestamps: np.ndarray, labels: list[str],
               median_filter_ms: float, min_duration: float) -> dict[str, list[dict]]:
    """The kit's get_events_for_all_files + create_events_from_prediction, plainly."""
    per_file: dict[str, dict[float, np.ndarray]] = {}
    for i, (name, stamp) in enumerate(zip(filenames, timestamps, strict=True)):
        per_file.setdefault(name, {})[float(stamp)] = predictions[i]
    out = {}
    for name, frames in per_file.items():
        stamps = np.array(sorted(frames))
        matrix = np.stack([frames[t] for t in stamps])
        width = round(median_filter_ms / np.mean(np.diff(stamps)))
        if width:
            matrix = median_filter(matrix, size=(width, 1))
        active = (matrix > 0.5).astype(np.int8)
        events = []
        for label in range(active.shape[1]):
            on = list(np.where(active[:, label])[0])
            groups: list[list[int]] = []
            for index in on:
                if groups and index == groups[-1][-1] + 1:
                    groups[-1].append(index)
                else:
                    groups.append([index])
            for group in groups:
                start, end = stamps[group[0]], stamps[group[-1]]
                if end - start >= min_duration:
                    events.append({"label": labels[label], "start": start, "end": end})
        events.sort(key=lambda e: e["start"])
        out[name] = events
    return out


def kit_scores(task: TaskEmbeddings, names: list[str], probs: np.ndarray, targets: np.ndarray,
               setting: tuple | None) -> tuple[dict[str, float], tuple | None]:
    """Every score of the task (the kit's log_scores); events: pick the post-processing with sed_eval first."""
    labels = [str(label) for label in task.label_vocabulary]
    if task.embedding_type == "scene":
        return {name: get_score(name).scene(probs, targets) for name in task.metadata["evaluation"]}, None
    filenames = [f for n in names for f in task.splits[n].filenames]
    stamps = np.concatenate([task.splits[n].timestamps for n in names])
    reference = {k: v for n in names for k, v in task.events[n].items()}
    primary = get_score(task.primary_score)
    settings = [setting] if setting else [(("median_filter_ms", 250), ("min_duration", m)) for m in (125, 250)]
    candidates = []
    for candidate in settings:
        predicted = kit_events(probs, filenames, stamps, labels, **dict(candidate))
        value = sed_eval_scores(primary.sed_kind, primary.sed_params, primary.subscores, predicted, reference,
                                labels)[primary.subscores[0]]
        candidates.append((0.0 if math.isnan(value) else value, candidate))
    candidates.sort(reverse=True)
    best = candidates[0][1]
    predicted = kit_events(probs, filenames, stamps, labels, **dict(best))
    scores = {}
    for name in task.metadata["evaluation"]:
        spec = get_score(name)
        scores[name] = sed_eval_scores(spec.sed_kind, spec.sed_params, spec.subscores, predicted, reference,
                                       labels)[spec.subscores[0]]
    return scores, best


Rows = tuple[torch.Tensor, np.ndarray]


def kit_rows(task: TaskEmbeddings, names: list[str], device: str) -> Rows:
    """The embeddings of the splits ``names`` stacked on ``device``, and their multi-hot labels (numpy, for
    scoring)."""
    vocabulary = [str(label) for label in task.label_vocabulary]
    x = np.concatenate([task.splits[n].embeddings for n in names])
    y = np.zeros((x.shape[0], len(vocabulary)), dtype=np.float32)
    rows = [labels for n in names for labels in task.splits[n].labels]
    for r, labels in enumerate(rows):
        y[r, [vocabulary.index(str(label)) for label in labels]] = 1
    return torch.from_numpy(x).to(device), y


def kit_fold(task: TaskEmbeddings, split: dict[str, list[str]], device: str) -> dict[str, Rows]:
    """:func:`kit_rows` of a fold's train, valid and test splits (the kit loads a task's embeddings once)."""
    return {part: kit_rows(task, split[part], device) for part in ("train", "valid", "test")}


def kit_train(task: TaskEmbeddings, split: dict[str, list[str]], conf: dict[str, Any], max_epochs: int, seed: int,
              fold: dict[str, Rows]) -> tuple[float, int, dict, tuple | None, int]:
    """One configuration trained on ``fold`` (:func:`kit_fold` of ``split``), on the device its rows are on:
    (best validation value, its epoch, the best state, its post-processing, epochs run)."""
    torch.manual_seed(seed)
    (x_train, y_train), (x_valid, y_valid) = fold["train"], fold["valid"]
    multilabel = task.prediction_type == "multilabel"
    model = kit_head(conf, x_train.shape[1], y_train.shape[1]).to(x_train.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=conf["lr"])
    target = torch.from_numpy(y_train if multilabel else y_train.argmax(1)).to(x_train.device)
    primary = get_score(task.primary_score)
    best, best_epoch, best_state, best_setting, wait, epochs_run = -math.inf, -1, {}, None, 0, 0
    for epoch in range(min(conf["max_epochs"], max_epochs)):
        epochs_run = epoch + 1
        model.train()
        for start in range(0, x_train.shape[0], conf["batch_size"]):
            logits = model(x_train[start:start + conf["batch_size"]])
            batch_target = target[start:start + conf["batch_size"]]
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, batch_target) if multilabel
                    else torch.nn.functional.cross_entropy(logits, batch_target))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % conf["check_val_every_n_epoch"]:
            continue
        model.eval()
        with torch.no_grad():
            logits = model(x_valid)
            probs = (torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)).cpu().numpy()
        scores, setting = kit_scores(task, split["valid"], probs, y_valid, None)
        value = scores[primary.name]
        if value > best:
            best, best_epoch, wait, best_setting = value, epoch, 0, setting
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= conf["patience"]:
                break
    if best_state:  # no check ran (timing runs of one epoch): keep the last weights
        model.load_state_dict(best_state)
    return best, best_epoch, model.state_dict(), best_setting, epochs_run


def kit_protocol(task: TaskEmbeddings, grid_points: int, max_epochs: int, seed: int, device: str) -> dict[str, Any]:
    """The kit's task_predictions, one configuration at a time; returns the fold test primary scores."""
    confs = sample_grid(task.metadata, grid_points)
    rotation = fold_rotation(task.metadata)
    folds = [kit_fold(task, split, device) for split in rotation]
    grid = [kit_train(task, rotation[0], conf, max_epochs, seed + i, folds[0]) for i, conf in enumerate(confs)]
    best = max(range(len(grid)), key=lambda i: grid[i][0])
    trained = [grid[best]] + [kit_train(task, split, confs[best], max_epochs, seed, fold)
                              for split, fold in zip(rotation[1:], folds[1:], strict=True)]
    tests = []
    for split, fold, (_, _, state, setting, _) in zip(rotation, folds, trained, strict=True):
        x, y = fold["test"]
        model = kit_head(confs[best], x.shape[1], y.shape[1]).to(device)
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            logits = model(x)
            probs = (torch.sigmoid(logits) if task.prediction_type == "multilabel" else torch.softmax(logits, -1))
        scores, _ = kit_scores(task, split["test"], probs.cpu().numpy(), y, setting)
        tests.append(scores[task.primary_score])
    grid_epochs, fold_epochs = [result[4] for result in grid], [result[4] for result in trained]
    return {"test_scores": tests, "mean": float(np.mean(tests)), "grid_epochs": grid_epochs,
            "fold_epochs": fold_epochs, "head_epochs": sum(grid_epochs) + sum(fold_epochs[1:])}
