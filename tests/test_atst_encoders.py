"""ATST-Clip / ATST-Frame encoders against the reference outputs in fixtures/ (README "How a test should use the
fixtures" §3-4), through the real checkpoint loader, plus the encoder API itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from hear_atst.encoders import load_encoder
from hear_atst.encoders.atst import (
    SIZES,
    FrameAST,
    encoder_from_config,
    patch_lengths,
    random_encoder,
)
from hear_atst.encoders.atst_recipes import (
    clip_forward_cls,
    clip_intermediate_layers,
    clip_intermediate_layers_chunks,
    frame_embedding_py,
    frame_intermediate_layers,
    masked_token_mean,
)
from hear_atst.frontends.atst_mel import ATSTLogMel

ATOL = 1e-5  # fixtures README: encoder outputs, float32 CPU
CLIP_FILES = ("atst_clip_lightning.ckpt", "atst_clip_dino.ckpt")


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def mel(fixtures_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(fixtures_dir / "atst_mel.pt")


@pytest.fixture(scope="module")
def expected_frame(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "expected_atst_frame.pt")


@pytest.fixture(scope="module")
def expected_clip(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "expected_atst_clip.pt")


@pytest.fixture(scope="module")
def frame_encoder(fixtures_dir: Path) -> FrameAST:
    return load_encoder(fixtures_dir / "atst_frame_lightning.ckpt", "atst_frame")


@pytest.fixture(scope="module", params=CLIP_FILES)
def clip_encoder(request: pytest.FixtureRequest, fixtures_dir: Path):
    return load_encoder(fixtures_dir / request.param, "atst_clip")


# --- ATST-Frame ---------------------------------------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize("clip", ["a_0p73s", "a_5p20s", "a_9p97s"])
def test_frame_single_matches_reference(frame_encoder, mel, expected_frame, clip):
    expected = expected_frame["single"][clip]
    x = mel[clip].unsqueeze(0)
    assert torch.equal(expected["length"], torch.tensor([x.shape[-1]]))
    for n in (1, 2):
        assert_close(frame_intermediate_layers(frame_encoder, x, expected["length"], n, True), expected[f"n{n}_scene"])
        assert_close(frame_intermediate_layers(frame_encoder, x, expected["length"], n, False),
                     expected[f"n{n}_frames"])


@torch.no_grad()
def test_frame_padded_batch_matches_reference_and_single_clips(frame_encoder, mel, expected_frame):
    batch = expected_frame["batch"]
    for n in (1, 2):
        assert_close(frame_intermediate_layers(frame_encoder, batch["mel"], batch["length"], n, True),
                     batch[f"n{n}_scene"])
        frames = frame_intermediate_layers(frame_encoder, batch["mel"], batch["length"], n, False)
        for i, clip in enumerate(batch["clips"]):
            valid = int(batch["length"][i]) // 4
            assert_close(frames[i, :valid], batch[f"n{n}_frames"][i, :valid])
            assert_close(frames[i : i + 1, :valid], expected_frame["single"][clip][f"n{n}_frames"])


@torch.no_grad()
def test_frame_embedding_py_recipe_matches_reference(frame_encoder, mel, expected_frame):
    """embedding.py on a 13.1 s clip (1311 frames): 1001-frame chunks, n=12 -> all blocks of the depth-2 model."""
    expected = expected_frame["embedding_py"]["a_13p10s"]
    scene, tokens, timestamps = frame_embedding_py(frame_encoder, mel["a_13p10s"].unsqueeze(0))
    assert_close(scene, expected["scene"])
    assert tokens.shape == (1, 250 + 310 // 4, 384)
    assert_close(tokens, expected["timestamp_embedding"])
    assert torch.equal(timestamps, expected["timestamps"])


@torch.no_grad()
def test_frame_embedding_py_from_waveform_through_the_front_end(frame_encoder, fixtures_dir, expected_frame):
    """The whole official chain: 16 kHz audio -> ATSTLogMel -> FrameAST -> embedding.py recipe."""
    audio = torch.load(fixtures_dir / "audio.pt")["sr16000"]["a_13p10s"]
    scene, tokens, _ = frame_embedding_py(frame_encoder, ATSTLogMel()(audio.unsqueeze(0)))
    assert_close(scene, expected_frame["embedding_py"]["a_13p10s"]["scene"])
    assert_close(tokens, expected_frame["embedding_py"]["a_13p10s"]["timestamp_embedding"])


# --- ATST-Clip (Lightning and DINO archives) -----------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize("group,clip", [("single", "a_0p73s"), ("single", "a_5p20s"),
                                        ("multi_chunk", "a_9p97s"), ("multi_chunk", "a_13p10s")])
def test_clip_matches_reference(clip_encoder, mel, expected_clip, group, clip):
    expected = expected_clip[group][clip]
    x, length = mel[clip].unsqueeze(0), expected["length"]
    assert_close(clip_intermediate_layers_chunks(clip_encoder, x, length, 1), expected["chunks_n1"])
    assert_close(clip_intermediate_layers_chunks(clip_encoder, x, length, 2), expected["chunks_n2"])
    assert_close(clip_intermediate_layers_chunks(clip_encoder, x, length, 2, avgpool=False),
                 expected["chunks_n2_cls_only"])
    if "forward_cls" in expected:  # T <= 1001: one pass over the whole input
        assert_close(clip_forward_cls(clip_encoder, x, length), expected["forward_cls"])
        assert_close(clip_intermediate_layers(clip_encoder, x, length, 1)[0], expected["intermediate_n1"])


@torch.no_grad()
def test_clip_chunk_quirk_divides_by_the_remaining_patch_count(clip_encoder, mel, expected_clip):
    """a_13p10s: chunk 0 mean = sum of its 150 tokens / 327 patches, chunk 1 = / 177, chunk 2 (109 frames <= 300)
    not counted. Rebuilt here from per-chunk block outputs; the clipped-length variant differs by ~1 (README)."""
    x, length = mel["a_13p10s"].unsqueeze(0), expected_clip["multi_chunk"]["a_13p10s"]["length"]
    assert expected_clip["multi_chunk"]["a_13p10s"]["num_chunks"] == 3
    last = clip_encoder.depth - 1
    y0 = clip_encoder.forward_blocks(x[..., :601], length, [last])[0]
    y1 = clip_encoder.forward_blocks(x[..., 601:1202], length - 601, [last])[0]
    quirk_mean = (y0[:, 1:].sum(1) / (327 + 1e-6) + y1[:, 1:].sum(1) / (177 + 1e-6)) / 2
    reference = expected_clip["multi_chunk"]["a_13p10s"]["chunks_n1"]
    assert_close(torch.cat([(y0[:, 0] + y1[:, 0]) / 2, quirk_mean], -1), reference)
    clipped_mean = (y0[:, 1:].mean(1) + y1[:, 1:].mean(1)) / 2
    assert (clipped_mean - reference[:, 192:]).abs().max() > 0.5


@torch.no_grad()
def test_clip_padded_batch_matches_reference(clip_encoder, expected_clip):
    batch = expected_clip["batch"]
    assert_close(clip_intermediate_layers_chunks(clip_encoder, batch["mel"], batch["length"], 1), batch["chunks_n1"])
    assert_close(clip_intermediate_layers_chunks(clip_encoder, batch["mel"], batch["length"], 2), batch["chunks_n2"])
    assert_close(clip_forward_cls(clip_encoder, batch["mel"], batch["length"]), batch["forward_cls"])


# --- encoder API -------------------------------------------------------------------------------------------------


def test_patch_lengths_drop_partial_patches():
    lengths = torch.tensor([0, 3, 4, 7, 8, 998, 1003])
    assert patch_lengths(lengths).tolist() == [0, 0, 1, 1, 2, 249, 250]


@torch.no_grad()
def test_forward_blocks_shapes_order_and_trailing_frames(clip_encoder, frame_encoder, mel):
    x = mel["a_9p97s"][..., :998].unsqueeze(0)  # 998 frames -> 249 patches, 2 trailing frames dropped
    for encoder, n_cls in ((clip_encoder, 1), (frame_encoder, 0)):
        both = encoder.forward_blocks(x, None, [0, 1])
        assert [tuple(y.shape) for y in both] == [(1, n_cls + 249, 192)] * 2
        assert torch.equal(encoder.forward_blocks(x, None, [1])[0], both[1])
        assert torch.equal(encoder.forward_blocks(x[..., :996], None, [1])[0], both[1])  # frames 996, 997 unused
        assert encoder.max_patches == 250 and encoder.config["embed_dim"] == 192


@torch.no_grad()
def test_forward_blocks_refuses_more_than_250_patches_and_bad_shapes(frame_encoder):
    frame_encoder.forward_blocks(torch.zeros(1, 1, 64, 1003), None, [1])  # 250 patches: the maximum
    with pytest.raises(ValueError, match="at most 250 patches"):
        frame_encoder.forward_blocks(torch.zeros(1, 1, 64, 1004), None, [1])
    with pytest.raises(ValueError, match=r"\[B, 1, 64, T\]"):
        frame_encoder.forward_blocks(torch.zeros(1, 64, 100), None, [1])
    with pytest.raises(ValueError, match="at least 4"):
        frame_encoder.forward_blocks(torch.zeros(1, 1, 64, 3), None, [1])
    with pytest.raises(ValueError, match="indices must be within"):
        frame_encoder.forward_blocks(torch.zeros(1, 1, 64, 8), None, [2])


def test_masked_token_mean_divides_by_count_plus_eps():
    tokens = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)
    mean = masked_token_mean(tokens, torch.tensor([2]))
    assert torch.allclose(mean, (tokens[0, 0] + tokens[0, 1]) / (2 + 1e-6))


@pytest.mark.parametrize("kind,size,params", [
    ("atst_clip", "base", 85_420_032), ("atst_frame", "base", 85_419_264),
    ("atst_clip", "small", 21_476_352), ("atst_frame", "small", 21_475_968),
])
def test_full_size_parameter_counts_match_the_reference(kind, size, params):
    """docs/atst.md §2.6 [verified-run]; built on the meta device (no memory)."""
    embed_dim, depth = SIZES[size]
    config = {"kind": kind, "embed_dim": embed_dim, "depth": depth, "pos_embed_slots": 251}
    encoder = encoder_from_config(config, device="meta")
    assert sum(p.numel() for p in encoder.parameters()) == params
    assert encoder.config["num_heads"] == embed_dim // 64


@torch.no_grad()
def test_random_small_encoder_runs_and_is_seeded():
    rng_state = torch.get_rng_state()
    encoder = random_encoder("atst_c2f", "small", seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global random state is untouched
    assert encoder.kind == "atst_frame"  # ATST-C2F is a FrameAST
    assert torch.equal(random_encoder("atst_c2f", "small", seed=3).blocks[5].mlp.fc2.weight,
                       encoder.blocks[5].mlp.fc2.weight)
    assert float(encoder.pos_embed.std()) == pytest.approx(0.02, rel=0.1)
    out = encoder.forward_blocks(torch.randn(2, 1, 64, 101), torch.tensor([101, 60]), [11])[0]
    assert out.shape == (2, 25, 384) and bool(torch.isfinite(out).all())


# --- real audio -------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_real_audio_padded_batch_equals_single_clips(frame_encoder, clip_encoder, data_dir):
    """Two real ESC-10 recordings of different length in one padded batch give their single-clip outputs."""
    files = sorted((data_dir / "esc10").glob("*/*.ogg"))[:2]
    waves = []
    for path, seconds in zip(files, (5.0, 3.1), strict=True):
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), rate, 16000)[: int(seconds * 16000)]
        waves.append(torch.from_numpy(np.ascontiguousarray(audio)))
    mels = [ATSTLogMel()(w.unsqueeze(0)) for w in waves]
    lengths = torch.tensor([m.shape[-1] for m in mels])
    batch = torch.zeros(2, 1, 64, int(lengths.max()))
    for i, m in enumerate(mels):
        batch[i, :, :, : m.shape[-1]] = m[0]
    frames = frame_intermediate_layers(frame_encoder, batch, lengths, 2, False)
    scenes = clip_intermediate_layers_chunks(clip_encoder, batch, lengths, 2)
    for i, m in enumerate(mels):
        single_length = torch.tensor([m.shape[-1]])
        valid = m.shape[-1] // 4
        assert_close(frames[i : i + 1, :valid], frame_intermediate_layers(frame_encoder, m, single_length, 2, False))
        assert_close(scenes[i : i + 1], clip_intermediate_layers_chunks(clip_encoder, m, single_length, 2))
