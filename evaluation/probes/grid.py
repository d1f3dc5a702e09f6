"""The HEAR kit's hyper-parameter grid and its sampling (``heareval/predictions/task_predictions.py``).

``PARAM_GRID`` has 16 points; ``sklearn.model_selection.ParameterGrid`` orders them (keys sorted, last key
fastest); ``random.shuffle`` reorders them under ``seed_everything(42)`` (which seeds Python's ``random``
with 42 and is the only draw before the shuffle); the first ``grid_points`` (default 8) are trained.
Torch classes/functions of the kit's grid are named by strings here (``"xavier_uniform_"``, ...): only their
order inside each list matters for the sampling, and it is kept.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

from sklearn.model_selection import ParameterGrid

KIT_SEED = 42

PARAM_GRID: dict[str, list[Any]] = {
    "hidden_layers": [1, 2],
    "hidden_dim": [1024],
    "dropout": [0.1],
    "lr": [3.2e-3, 1e-3, 3.2e-4, 1e-4],
    "patience": [20],
    "max_epochs": [500],
    "check_val_every_n_epoch": [3],
    "batch_size": [1024],
    "hidden_norm": ["BatchNorm1d"],
    "norm_after_activation": [False],
    "embedding_norm": ["Identity"],
    "initialization": ["xavier_uniform_", "xavier_normal_"],
    "optim": ["Adam"],
}
FAST_PARAM_GRID = {**copy.deepcopy(PARAM_GRID), "max_epochs": [10, 50], "check_val_every_n_epoch": [3, 10]}
FASTER_PARAM_GRID = {
    **copy.deepcopy(PARAM_GRID), "hidden_layers": [0, 1], "hidden_dim": [64, 128], "patience": [1, 3],
    "max_epochs": [10], "check_val_every_n_epoch": [1],
}
GRIDS = {"default": PARAM_GRID, "fast": FAST_PARAM_GRID, "faster": FASTER_PARAM_GRID}

# The kit's TASK_SPECIFIC_PARAM_GRID (sed_eval is slow on DCASE), plus MAESTRO's
# evaluation_params.task_specific_param_grid from hear-preprocess, so that a task folder written without
# evaluation_params still gets it.
TASK_SPECIFIC_PARAM_GRID: dict[str, dict[str, list[Any]]] = {
    "dcase2016_task2": {"check_val_every_n_epoch": [10]},
    "maestro": {"max_epochs": [50], "check_val_every_n_epoch": [1]},
}


def task_grid(metadata: Mapping[str, Any], grid: str = "default") -> dict[str, list[Any]]:
    """The grid the kit trains for a task: base grid, then the built-in override, then the metadata's."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    final = copy.copy(GRIDS[grid])
    final.update(TASK_SPECIFIC_PARAM_GRID.get(str(metadata["task_name"]), {}))
    final.update(metadata.get("evaluation_params", {}).get("task_specific_param_grid", {}))
    _check_supported(final, str(metadata["task_name"]))
    return final


IMPLEMENTED_ONLY = {"norm_after_activation": [False], "optim": ["Adam"]}


def _check_supported(grid: Mapping[str, list[Any]], task_name: str) -> None:
    """Refuse, rather than ignore, a grid this runner cannot train: unknown keys, or values of
    :data:`IMPLEMENTED_ONLY` beyond those implemented (``embedding_norm`` may take any value: the kit builds
    that layer but never applies it)."""
    unknown = sorted(set(grid) - set(PARAM_GRID))
    if unknown:
        raise ValueError(f"task {task_name}: unknown hyper-parameter(s) {', '.join(unknown)} in its grid")
    for key, allowed in IMPLEMENTED_ONLY.items():
        other = [value for value in grid[key] if value not in allowed]
        if other:
            raise ValueError(f"task {task_name}: grid value {key}={other} is not implemented here "
                             f"(only {allowed}); the kit's protocol for this task cannot be reproduced")


def sample_grid(metadata: Mapping[str, Any], grid_points: int = 8, grid: str = "default") -> list[dict[str, Any]]:
    """The configurations the kit trains, in its order: ParameterGrid, shuffled under seed 42, first N."""
    if grid_points < 1:
        raise ValueError(f"grid_points must be at least 1, got {grid_points}")
    configs = list(ParameterGrid(task_grid(metadata, grid)))
    random.Random(KIT_SEED).shuffle(configs)
    return configs[:grid_points]
