"""The ``hear`` probe: the kit's MLP hyper-parameter grid (:mod:`evaluation.probes.grid`), heads as in
:mod:`evaluation.probes.mlp`, trained by the shared loop (:mod:`evaluation.probes.train`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from evaluation.probes.grid import sample_grid
from evaluation.probes.heads import TrainedHeadsProbe, check_epoch_cap
from evaluation.probes.mlp import HeadConfig
from evaluation.probes.train import Schedule

if TYPE_CHECKING:
    from evaluation.protocol import ProbeConfig


class HearGridProbe(TrainedHeadsProbe):
    """The kit's grid points, sampled as the kit samples them, all trained on the first fold."""

    @classmethod
    def check_task(cls, config: ProbeConfig, metadata: Mapping[str, Any]) -> None:
        """An epoch cap below the validation interval of a grid point this run would sample."""
        if config.max_epochs is not None:
            for point in sample_grid(metadata, config.grid_points, config.grid):
                check_epoch_cap(config.max_epochs, point["check_val_every_n_epoch"])

    @classmethod
    def run_name_parts(cls, config: ProbeConfig) -> list[str]:
        return [*[f"grid={config.grid}"] * (config.grid != "default"),
                *[f"points={config.grid_points}"] * (config.grid_points != 8)]

    @classmethod
    def protocol_fields(cls, config: ProbeConfig) -> dict[str, Any]:
        return {"grid_points": config.grid_points, "grid": config.grid}

    def heads(self, n_train: int) -> tuple[list[dict[str, Any]], list[HeadConfig], list[Schedule]]:
        config = self.context.config
        hparams = sample_grid(self.context.metadata, config.grid_points, config.grid)
        heads = [HeadConfig(hidden_layers=h["hidden_layers"], hidden_dim=h["hidden_dim"], dropout=h["dropout"],
                            lr=h["lr"], initialization=h["initialization"], hidden_norm=h["hidden_norm"])
                 for h in hparams]
        schedules = [Schedule(h["max_epochs"], h["check_val_every_n_epoch"], h["patience"], h["batch_size"],
                              maximize=self.context.maximize) for h in hparams]
        return hparams, heads, schedules

