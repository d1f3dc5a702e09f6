"""ATST log-mel front-end: parity with the reference output (fixtures) and its documented behaviour."""

from __future__ import annotations

import pytest
import torch

from hear_atst.frontends import atst_mel
from hear_atst.frontends.atst_mel import ATSTLogMel


@pytest.fixture(scope="module")
def audio16k(fixtures_dir):
    return torch.load(fixtures_dir / "audio.pt", weights_only=True)["sr16000"]


@pytest.fixture(scope="module")
def reference_mel(fixtures_dir):
    return torch.load(fixtures_dir / "atst_mel.pt", weights_only=True)


def test_matches_reference_for_every_clip(audio16k, reference_mel):
    frontend = ATSTLogMel()
    for clip, wave in audio16k.items():
        mel = frontend(wave.unsqueeze(0))
        assert mel.shape == (1, 1, 64, wave.numel() // 160 + 1)
        torch.testing.assert_close(mel[0], reference_mel[clip], atol=1e-5, rtol=0)


def test_db_floor_is_per_example_in_a_batch(audio16k, reference_mel):
    loud = audio16k["a_5p20s"]
    quiet = loud * 1e-3
    batch = ATSTLogMel()(torch.stack([loud, quiet]))
    torch.testing.assert_close(batch[0], reference_mel["a_5p20s"], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], ATSTLogMel()(quiet.unsqueeze(0))[0], atol=0, rtol=0)
    # 60 dB quieter everywhere, its floor 60 dB lower too: a constant shift on the [-1, 1] MinMax scale. A batch-wide
    # floor (the rank-3 torchaudio behaviour) would clamp the quiet clip's bins below the loud clip's floor instead.
    shift = 2 * 60 / (atst_mel.MINMAX_MAX - atst_mel.MINMAX_MIN)
    torch.testing.assert_close(batch[0] - batch[1], torch.full_like(batch[0], shift), atol=2e-6, rtol=0)


def test_block_wise_transform_equals_whole_clip(audio16k, monkeypatch):
    wave = audio16k["a_13p10s"].unsqueeze(0)
    whole = ATSTLogMel()(wave)
    monkeypatch.setattr(atst_mel, "FRAMES_PER_BLOCK", 97)
    blocked = ATSTLogMel()(wave)
    torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=0)


def test_too_short_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 513 samples"):
        ATSTLogMel()(torch.zeros(1, 512))
