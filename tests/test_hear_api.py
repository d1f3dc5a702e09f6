"""The shared HEAR timestamp grid and its short-clip rule, checked directly and on the weight-free mel baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hear_atst import mel
from hear_atst.hear_api import centred_timestamps


def test_grid_is_the_same_for_every_sound():
    audio = torch.zeros(3, 16000)
    timestamps = centred_timestamps(25, 40.0, 15.0, audio, 16000)
    assert timestamps.dtype == torch.float32 and timestamps.shape == (3, 25)
    assert torch.equal(timestamps, (15.0 + 40.0 * torch.arange(25)).float().expand(3, -1))


@pytest.mark.parametrize("n_samples", [1, 100, 239])
def test_a_clip_shorter_than_the_first_centre_has_its_one_frame_at_its_midpoint(n_samples):
    audio = torch.zeros(2, n_samples)
    assert torch.equal(centred_timestamps(1, 40.0, 15.0, audio, 16000), torch.full((2, 1), n_samples / 32))


def test_a_clip_exactly_as_long_as_the_first_centre_keeps_the_grid():
    assert torch.equal(centred_timestamps(1, 40.0, 15.0, torch.zeros(1, 240), 16000), torch.tensor([[15.0]]))


def test_several_frames_in_a_clip_shorter_than_the_first_centre_are_refused():
    with pytest.raises(ValueError, match="shorter than the first centre"):
        centred_timestamps(2, 40.0, 15.0, torch.zeros(1, 100), 16000)


@pytest.mark.parametrize("n_samples", [1, 100, 239, 240, 512, 513, 1120])
def test_mel_baseline_timestamps_stay_inside_short_clips(n_samples):
    """Zero-padded to 513 samples (one 40 ms token centred at 15 ms); under 240 samples the token sits at the
    clip's midpoint."""
    model = mel.load_model()
    audio = torch.rand(2, n_samples, generator=torch.Generator().manual_seed(n_samples)) * 2 - 1
    embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
    n_tokens = (max(n_samples, 513) // 160 + 1) // 4
    assert embeddings.shape == (2, n_tokens, 64) and bool(torch.isfinite(embeddings).all())
    duration_ms = n_samples / 16
    first = duration_ms / 2 if n_samples < 240 else 15.0
    assert torch.equal(timestamps, (first + 40.0 * torch.arange(n_tokens)).float().expand(2, -1))
    assert 0 < float(timestamps.max()) <= duration_ms


def test_embeddings_are_ordinary_tensors_for_downstream_training():
    """Outputs carry no autograd history yet can be trained on and changed in place (inference-mode tensors
    could not: "Inference tensors cannot be saved for backward")."""
    model = mel.load_model()
    audio = torch.rand(2, 16000) * 2 - 1
    scene = mel.get_scene_embeddings(audio, model)
    embeddings, _ = mel.get_timestamp_embeddings(audio, model)
    assert not scene.requires_grad and not scene.is_inference() and not embeddings.is_inference()
    head = torch.nn.Linear(scene.shape[1], 3)
    head(scene).sum().backward()
    assert head.weight.grad is not None
    embeddings += 1.0


@pytest.mark.parametrize("clip", ["a_0p73s", "a_5p20s", "a_13p10s"])
def test_mel_baseline_values_from_the_reference_log_mel(fixtures_dir, clip):
    """The baseline's numbers, computed in numpy from the reference log-mel (``atst_mel.pt``): each token is the mean
    of frames 4i..4i+3 (a trailing partial group dropped), the scene is every frame's mean then population std."""
    audio = torch.load(fixtures_dir / "audio.pt", weights_only=True)["sr16000"][clip][None]
    frames = torch.load(fixtures_dir / "atst_mel.pt", weights_only=True)[clip][0].double().numpy().T  # [T, 64]
    n_tokens = len(frames) // 4
    tokens = frames[: 4 * n_tokens].reshape(n_tokens, 4, 64).mean(axis=1)
    scene = np.concatenate([frames.mean(axis=0), frames.std(axis=0, ddof=0)])
    model = mel.load_model()
    embeddings, timestamps = mel.get_timestamp_embeddings(audio, model)
    np.testing.assert_allclose(embeddings[0].numpy(), tokens, atol=1e-5, rtol=0)
    np.testing.assert_allclose(mel.get_scene_embeddings(audio, model)[0].numpy(), scene, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(timestamps[0].numpy(), 15.0 + 40.0 * np.arange(n_tokens))
