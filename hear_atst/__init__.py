"""hear-atst: ATST-Clip, ATST-Frame, ATST-C2F and ASiT behind the HEAR API, and the harness that scores them.

Data flow: audio -> ``frontends`` -> ``encoders`` -> HEAR modules (``hear_atst.atst_frame`` ...) ->
``evaluation.embeddings`` -> ``evaluation.probes`` -> ``evaluation.scores`` -> ``evaluation.leaderboard``.
"""

__version__ = "0.1.0"
