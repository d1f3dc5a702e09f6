"""ASiT: encoder parity with the reference ViT (fixtures), checkpoint layouts, and the HEAR module's recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from hear_atst import asit
from hear_atst.checkpoints import CheckpointError, load_torch_file
from hear_atst.encoders import convert_checkpoint
from hear_atst.encoders.asit import (
    POS_GRID,
    AsitEncoder,
    build_encoder,
    encoder_shapes,
    extract_encoder_state,
)
from hear_atst.frontends.kaldi_fbank import NORMALISED_PAD_VALUE, KaldiFbank
from hear_atst.weights import WEIGHTS_DIR_ENV, WeightsNotFoundError

RATES = ["sr16000", "sr32000"]


@pytest.fixture(scope="module")
def expected(fixtures_dir):
    return torch.load(fixtures_dir / "expected_asit.pt", weights_only=True)


@pytest.fixture(scope="module")
def fbanks(fixtures_dir):
    return torch.load(fixtures_dir / "asit_fbank.pt", weights_only=True)


@pytest.fixture(scope="module")
def audio(fixtures_dir):
    return torch.load(fixtures_dir / "audio.pt", weights_only=True)


@pytest.fixture(scope="module")
def encoder(fixtures_dir) -> AsitEncoder:
    path = fixtures_dir / "asit.pt"
    return build_encoder("asit", extract_encoder_state(load_torch_file(path), "asit", str(path)))


@pytest.fixture(scope="module")
def model(fixtures_dir) -> asit.AsitHear:
    return asit.load_model(fixtures_dir / "asit.pt")


@pytest.fixture(scope="module")
def speech(data_dir) -> torch.Tensor:
    """The longest LibriSpeech utterance of the shared data (16 kHz, 22.75 s: 4 chunks)."""
    wave, rate = sf.read(data_dir / "librispeech_spk10/3080/3080-5032-0009.flac", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wave)


# ---------------------------------------------------------------- encoder parity with the reference

@pytest.mark.parametrize("filename", ["asit.pt", "asit_raw.pt"])
@pytest.mark.parametrize("rate", RATES)
def test_encoder_reproduces_reference_tokens(fixtures_dir, expected, fbanks, filename, rate):
    path = fixtures_dir / filename
    encoder = build_encoder("asit", extract_encoder_state(load_torch_file(path), "asit", str(path)))
    assert (encoder.embed_dim, encoder.depth, encoder.config["num_heads"]) == (192, 2, 3)
    reference = expected[rate]
    x = torch.stack([
        fbanks[rate][item["clip"]][item["start_frame"]:item["start_frame"] + 592] for item in reference["inputs"]
    ]).unsqueeze(1)
    with torch.no_grad():
        tokens = encoder(x)
    torch.testing.assert_close(tokens, reference["tokens"], atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens[:, 0], reference["cls"], atol=1e-5, rtol=0)
    padded = reference["padded"]
    clip = fbanks[rate][padded["clip"]]
    x = torch.cat([clip, torch.full((592 - clip.shape[0], 128), padded["pad_value"])])[None, None]
    with torch.no_grad():
        tokens = encoder(x)
    torch.testing.assert_close(tokens, padded["tokens"], atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens[:, 0], padded["cls"], atol=1e-5, rtol=0)


def test_intermediate_layers_apply_the_final_norm_to_each_block(encoder, expected, fbanks):
    x = fbanks["sr16000"]["a_9p97s"][:592][None, None]
    with torch.no_grad():
        first, last = encoder.intermediate_layers(x, [0, 1])
        direct = encoder.norm(encoder.blocks[0](
            torch.cat([encoder.cls_token + encoder.pos_embed[:, :1],
                       encoder.patch_embed(x) + encoder.pos_embed[:, 1:]], dim=1)))
    torch.testing.assert_close(last, expected["sr16000"]["tokens"][:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(first, direct, atol=1e-6, rtol=0)
    assert json.loads(json.dumps(encoder.config)) == encoder.config


def test_pos_embed_grid_is_time_major(encoder):
    probe = AsitEncoder(encoder.embed_dim, encoder.depth)
    frequency_code = torch.arange(POS_GRID[1], dtype=torch.float32).repeat(POS_GRID[0])  # t0f0..t0f7, t1f0..
    with torch.no_grad():
        probe.pos_embed[0, 1:] = frequency_code[:, None]
    # Shorter inputs: the first rows * 8 positions. Longer: resized along time only, so a pattern that depends
    # only on frequency survives (it would be scrambled if the grid were read as 8 x 37).
    assert torch.equal(probe.patch_pos_embed(5)[0, :, 0], frequency_code[: 5 * 8])
    torch.testing.assert_close(probe.patch_pos_embed(74)[0, :, 0], frequency_code[:8].repeat(74), atol=1e-5, rtol=0)
    with torch.no_grad():
        tokens = encoder(torch.randn(1, 1, 74 * 16 + 7, 128))  # trailing 7 frames dropped
    assert tokens.shape == (1, 1 + 74 * 8, 192)


# ---------------------------------------------------------------- checkpoint layouts

def _synthesised(layout: dict, fill: float) -> dict[str, torch.Tensor]:
    """Zero-memory tensors of the listed shapes (values = ``fill``)."""
    return {key: torch.tensor(fill).expand(spec["shape"]) for key, spec in layout.items()}


@pytest.fixture(scope="module")
def official_layouts(fixtures_dir):
    return json.loads((fixtures_dir / "keys_official.json").read_text())["asit_base"]


def _check_base(state: dict[str, torch.Tensor], fill: float) -> None:
    encoder = build_encoder("asit", state)
    assert (encoder.embed_dim, encoder.depth, encoder.config["num_heads"]) == (768, 12, 12)
    assert len(state) == 150
    assert sum(p.numel() for p in encoder.parameters()) == 85_482_240
    assert float(encoder.cls_token.detach().flatten()[0]) == fill


def test_official_layouts_load_at_full_size(official_layouts):
    pretrainedsed = _synthesised(official_layouts["pretrainedsed_ASIT_ssl"]["state_dict"], 1.0)
    _check_base(extract_encoder_state(pretrainedsed, "asit", "ASIT_ssl.pt"), 1.0)
    raw = _synthesised(official_layouts["raw_encoder"]["state_dict"], 2.0)
    _check_base(extract_encoder_state(raw, "asit", "raw.pt"), 2.0)
    # main_ASiT.py checkpoint: teacher (backbone.*) preferred over the DDP-wrapped student (module.backbone.*);
    # the head_cls / head_recons projection heads are dropped.
    layout = official_layouts["official_pretraining_checkpoint"]
    archive = {
        "teacher": _synthesised(layout["teacher"], 3.0),
        "student": _synthesised(layout["student"], 4.0),
        "loss_cls": {"center": torch.zeros(1, 8192)},
        "epoch": 99,
    }
    _check_base(extract_encoder_state(archive, "asit", "checkpoint.pth"), 3.0)
    del archive["teacher"]
    _check_base(extract_encoder_state(archive, "asit", "checkpoint.pth"), 4.0)


def test_bad_checkpoints_fail_clearly(fixtures_dir, official_layouts):
    state = dict(load_torch_file(fixtures_dir / "asit_raw.pt"))
    with pytest.raises(CheckpointError, match=r"x\.pt: .*missing \(1\): norm\.bias"):
        extract_encoder_state({k: v for k, v in state.items() if k != "norm.bias"}, "asit", "x.pt")
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): mask_embed"):
        extract_encoder_state({**state, "mask_embed": torch.zeros(1, 192)}, "asit", "x.pt")
    with pytest.raises(CheckpointError, match=r"wrong shape \(1\): cls_token: \(1, 1, 96\)"):
        extract_encoder_state({**state, "cls_token": torch.zeros(1, 1, 96)}, "asit", "x.pt")
    atst = fixtures_dir / "atst_frame_lightning.ckpt"
    with pytest.raises(CheckpointError, match=str(atst)):
        extract_encoder_state(load_torch_file(atst), "asit", str(atst))
    with pytest.raises(CheckpointError, match="expected a state dict"):
        extract_encoder_state([1, 2], "asit", "x.pt")
    with pytest.raises(ValueError, match="not an ASiT kind"):
        extract_encoder_state(state, "atst_frame", "x.pt")
    assert set(encoder_shapes(192, 2)) == set(state)


# ---------------------------------------------------------------- HEAR module

@pytest.mark.parametrize("sample_rate", [16000, 32000])
def test_hear_module_reproduces_reference_padded_chunk(fixtures_dir, audio, expected, sample_rate):
    """a_5p20s (518 frames) is one chunk padded in the log-mel domain, exactly like the reference input."""
    model = asit.load_model(fixtures_dir / "asit.pt", sample_rate=sample_rate)
    wave = audio[f"sr{sample_rate}"]["a_5p20s"].unsqueeze(0)
    embeddings, timestamps = asit.get_timestamp_embeddings(wave, model)
    scene = asit.get_scene_embeddings(wave, model)
    reference = expected[f"sr{sample_rate}"]["padded"]
    columns = reference["tokens"][:, 1:].unflatten(1, (37, 8)).mean(dim=2)
    n_tokens = 32  # centres 87.5 .. 5047.5 ms lie inside the 5.2 s clip; 5207.5 ms does not
    assert embeddings.shape == (1, n_tokens, 192) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings, columns[:, :n_tokens], atol=1e-5, rtol=0)
    torch.testing.assert_close(timestamps[0], 87.5 + 160.0 * torch.arange(n_tokens), atol=0, rtol=0)
    torch.testing.assert_close(scene[:, :192], reference["cls"], atol=1e-5, rtol=0)
    torch.testing.assert_close(scene[:, 192:], columns[:, :n_tokens].mean(dim=1), atol=1e-5, rtol=0)


def test_chunks_tile_the_global_token_grid(model, encoder, speech):
    """Chunk k = the 592 frames of samples [94,720 k, 94,720 k + 94,960); the last chunk padded in log-mel."""
    n = speech.numel()
    embeddings, timestamps = asit.get_timestamp_embeddings(speech[None], model)
    scene = asit.get_scene_embeddings(speech[None], model)
    n_tokens = (n - 1400) // 2560 + 1
    assert embeddings.shape == (1, n_tokens, 192)
    steps = timestamps[0].diff()
    assert float(timestamps[0, 0]) == 87.5 and bool((steps == 160.0).all())
    assert float(timestamps[0, -1]) <= 1000 * n / 16000 < float(timestamps[0, -1]) + 160
    frontend = KaldiFbank(16000)
    cls, means, weights = [], [], []
    for k, start in enumerate(range(0, n_tokens * 2560, 94720)):
        piece = speech[start:start + 94960][None]
        fbank = frontend(piece)
        weights.append(fbank.shape[1])
        fbank = torch.cat([fbank, torch.full((1, 592 - fbank.shape[1], 128), NORMALISED_PAD_VALUE)], dim=1)
        with torch.no_grad():
            tokens = encoder(fbank[:, None])
        columns = tokens[:, 1:].unflatten(1, (37, 8)).mean(dim=2)[:, : n_tokens - 37 * k]
        torch.testing.assert_close(embeddings[:, 37 * k:37 * k + columns.shape[1]], columns, atol=1e-5, rtol=0)
        cls.append(tokens[0, 0])
        means.append(columns[0].mean(dim=0))
    assert len(weights) == 4 and weights[:3] == [592, 592, 592] and weights[3] < 592
    w = torch.tensor(weights, dtype=torch.float32)[:, None]
    expected_scene = torch.cat([(torch.stack(cls) * w).sum(0), (torch.stack(means) * w).sum(0)]) / w.sum()
    torch.testing.assert_close(scene[0], expected_scene, atol=1e-5, rtol=0)


def test_clip_embedding_does_not_depend_on_the_batch(model, speech, data_dir):
    n = 16000 * 7  # two chunks, the second one padded
    others = [
        torch.from_numpy(sf.read(path, dtype="float32")[0][:n])
        for path in sorted((data_dir / "librispeech_spk10").rglob("*.flac"))[:8]
        if sf.info(path).frames >= n
    ][:2]
    batch = torch.stack([speech[:n], *others])
    together, timestamps = asit.get_timestamp_embeddings(batch, model)
    scene_together = asit.get_scene_embeddings(batch, model)
    for index in range(batch.shape[0]):
        alone, alone_timestamps = asit.get_timestamp_embeddings(batch[index:index + 1], model)
        torch.testing.assert_close(together[index], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(timestamps[index], alone_timestamps[0], atol=0, rtol=0)
        torch.testing.assert_close(
            scene_together[index], asit.get_scene_embeddings(batch[index:index + 1], model)[0], atol=1e-5, rtol=0
        )
    assert not torch.allclose(together[0], together[1])


def test_deterministic(model, speech):
    first = asit.get_timestamp_embeddings(speech[None, :50000], model)[0]
    second = asit.get_timestamp_embeddings(speech[None, :50000], model)[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("n_samples", "n_tokens"),
    [(1, 1), (100, 1), (239, 1), (399, 1), (400, 1), (1399, 1), (1400, 1), (3959, 1), (3960, 2), (94960, 37),
     (96119, 37), (96120, 38)],
)
def test_any_length_gives_centred_tokens_inside_the_clip(model, n_samples, n_tokens):
    """Token centres ``160 i + 87.5`` ms inside the clip; a clip shorter than 87.5 ms (1400 samples) gets one token,
    timestamped at its midpoint."""
    audio = torch.rand(2, n_samples, generator=torch.Generator().manual_seed(n_samples)) * 2 - 1
    embeddings, timestamps = asit.get_timestamp_embeddings(audio, model)
    scene = asit.get_scene_embeddings(audio, model)
    assert embeddings.shape == (2, n_tokens, model.timestamp_embedding_size)
    assert scene.shape == (2, model.scene_embedding_size) and bool(torch.isfinite(scene).all())
    duration_ms = 1000 * n_samples / 16000
    expected = torch.tensor([duration_ms / 2]) if n_samples < 1400 else 87.5 + 160.0 * torch.arange(n_tokens)
    torch.testing.assert_close(timestamps, expected.float().expand(2, -1), atol=0, rtol=0)
    assert 0 < float(timestamps.max()) <= duration_ms


def test_twenty_minutes_in_bounded_chunk_groups(model, monkeypatch):
    seen = []
    hook = model.encoder.patch_embed.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    try:
        audio = torch.rand(1, 16000 * 60 * 20, generator=torch.Generator().manual_seed(0)) * 0.2 - 0.1
        embeddings, timestamps = asit.get_timestamp_embeddings(audio, model)
    finally:
        hook.remove()
    assert embeddings.shape == (1, 7500, 192)
    assert float(timestamps[0, -1]) == 87.5 + 160 * 7499 <= 1_200_000
    assert max(seen) <= asit.CHUNKS_PER_FORWARD and sum(seen) == 203  # ceil(7500 / 37) chunks


def test_blocks_option_concatenates_the_last_blocks(fixtures_dir, speech):
    one = asit.load_model(fixtures_dir / "asit.pt")
    two = asit.load_model(fixtures_dir / "asit.pt", blocks=2)
    assert (two.timestamp_embedding_size, two.scene_embedding_size) == (384, 768)
    clip = speech[None, :40000]
    embeddings_one, embeddings_two = (asit.get_timestamp_embeddings(clip, m)[0] for m in (one, two))
    torch.testing.assert_close(embeddings_two[..., 192:], embeddings_one, atol=1e-6, rtol=0)
    scene_one, scene_two = (asit.get_scene_embeddings(clip, m) for m in (one, two))
    torch.testing.assert_close(scene_two[:, 192:384], scene_one[:, :192], atol=1e-6, rtol=0)  # CLS of last block
    torch.testing.assert_close(scene_two[:, 576:], scene_one[:, 192:], atol=1e-6, rtol=0)  # its patch mean
    assert asit.load_model(fixtures_dir / "asit.pt", blocks=None).blocks == one.blocks == [1]  # None = default
    by_index = asit.load_model(fixtures_dir / "asit.pt", blocks=[0])
    assert torch.equal(asit.get_scene_embeddings(clip, by_index)[:, :192], scene_two[:, :192])
    with pytest.raises(ValueError, match="blocks=3"):
        asit.load_model(fixtures_dir / "asit.pt", blocks=3)
    for text in ("01", "abc"):  # a --model-option value that is not JSON stays text: never split into characters
        with pytest.raises(ValueError, match=f"blocks='{text}': give an int n"):
            asit.load_model(fixtures_dir / "asit.pt", blocks=text)


def test_bf16_within_two_percent_of_fp32(fixtures_dir, model, speech):
    bf16 = asit.load_model(fixtures_dir / "asit.pt", precision="bf16")
    clip = speech[None, :40000]
    pairs = [(asit.get_scene_embeddings(clip, bf16), asit.get_scene_embeddings(clip, model)),
             (asit.get_timestamp_embeddings(clip, bf16)[0], asit.get_timestamp_embeddings(clip, model)[0])]
    for low, full in pairs:
        assert low.dtype == torch.float32
        assert 0 < float((low - full).norm() / full.norm()) < 0.02  # relative error, as for the ATST modules


def test_load_model_options_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError, match="PretrainedSED/releases"):
        asit.load_model()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        asit.load_model(tmp_path / "ASIT_ssl.pt")
    with pytest.raises(WeightsNotFoundError, match="is a directory, not a file"):
        asit.load_model(tmp_path)
    with pytest.raises(ValueError, match="sample_rate=22050"):
        asit.load_model(random_weights=True, sample_rate=22050)
    model = asit.load_model(random_weights=True)
    assert (model.sample_rate, model.timestamp_embedding_size, model.scene_embedding_size) == (16000, 768, 1536)
    assert not model.training and model.config["depth"] == 12


def test_weights_found_through_the_weights_directory(fixtures_dir, tmp_path, monkeypatch):
    (tmp_path / "ASIT_ssl.pt").symlink_to(Path(fixtures_dir / "asit.pt"))
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert asit.load_model().encoder.embed_dim == 192


def test_converted_safetensors_file_gives_the_same_embeddings(fixtures_dir, tmp_path, model, speech):
    converted = tmp_path / "asit.safetensors"
    metadata = convert_checkpoint(fixtures_dir / "asit.pt", converted)  # kind detected from the tensors
    assert metadata["kind"] == "asit" and json.loads(metadata["config"])["embed_dim"] == 192
    clip = speech[None, :30000]
    torch.testing.assert_close(
        asit.get_scene_embeddings(clip, asit.load_model(converted)), asit.get_scene_embeddings(clip, model),
        atol=0, rtol=0,
    )
