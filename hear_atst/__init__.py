"""hear-atst: ATST-Clip, ATST-Frame, ATST-C2F and ASiT behind the HEAR API, and the harness that scores them.

Data flow: audio -> ``frontends`` -> ``encoders`` -> HEAR modules (``hear_atst.atst_frame`` ...) ->
``evaluation.embeddings`` -> ``evaluation.probes`` -> ``evaluation.scores`` -> ``evaluation.leaderboard``.

``hear_atst.evaluate(model, task, ...)`` runs that chain from Python on any model (:func:`hear_atst.api.evaluate`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def evaluate(model: Any, task: Any, **settings: Any) -> Any:
    """Evaluate ``model`` (a model in memory or any ``--model`` form) on ``task``: see :func:`hear_atst.api.evaluate`
    (imported here on first use, so that ``import hear_atst`` stays light)."""
    from hear_atst.api import evaluate as evaluate_model

    return evaluate_model(model, task, **settings)
