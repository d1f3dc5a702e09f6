"""The ATST HEAR modules (atst_frame, atst_clip, atst_c2f) against the authors' reference outputs and on real audio."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from atst_helpers import fixture, reference_blocks, teacher_weights, write_c2f_checkpoint

from hear_atst import atst_c2f, atst_clip, atst_frame
from hear_atst.checkpoints import CheckpointError
from hear_atst.encoders import load_encoder
from hear_atst.frontends.atst_mel import ATSTLogMel
from hear_atst.weights import WEIGHTS_DIR_ENV, WeightsNotFoundError

ATOL = 1e-5  # fixtures README: float32 re-implementation tolerance


@pytest.fixture(scope="module")
def fx(fixtures_dir):
    names = ("audio", "atst_mel", "expected_atst_frame", "expected_atst_clip")
    return {name: fixture(fixtures_dir, name) for name in names}


@pytest.fixture(scope="module")
def frame_ckpt(fixtures_dir):
    return str(fixtures_dir / "atst_frame_lightning.ckpt")


@pytest.fixture(scope="module")
def frame_model(frame_ckpt):
    return atst_frame.load_model(frame_ckpt)


def audio_of(fx, clip):
    return fx["audio"]["sr16000"][clip].unsqueeze(0)


def centres(n_tokens):
    return 40.0 * torch.arange(n_tokens, dtype=torch.float32) + 15.0


# --- ATST-Frame -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", ["a_0p73s", "a_5p20s", "a_9p97s"])
def test_frame_equals_reference_get_intermediate_layers(fx, frame_ckpt, frame_model, clip):
    """Default = every block (n=12 -> both fixture blocks); blocks=1 = the last; scene = token mean."""
    expected = fx["expected_atst_frame"]["single"][clip]
    audio = audio_of(fx, clip)
    embeddings, timestamps = atst_frame.get_timestamp_embeddings(audio, frame_model)
    torch.testing.assert_close(embeddings, expected["n2_frames"], atol=ATOL, rtol=0)
    torch.testing.assert_close(atst_frame.get_scene_embeddings(audio, frame_model), expected["n2_scene"],
                               atol=ATOL, rtol=0)
    assert torch.equal(timestamps[0], centres(expected["n2_frames"].shape[1]))
    last = atst_frame.load_model(frame_ckpt, blocks=1)
    assert last.timestamp_embedding_size == last.scene_embedding_size == 192
    torch.testing.assert_close(atst_frame.get_timestamp_embeddings(audio, last)[0], expected["n1_frames"],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(atst_frame.get_scene_embeddings(audio, last), expected["n1_scene"], atol=ATOL, rtol=0)


def test_frame_long_clip_equals_an_independent_oracle_on_the_documented_windows(fx, fixtures_dir, frame_model):
    """13.1 s = 1311 frames = 327 tokens in 1000-frame windows (docs/models.md): frames 0..999, then 1000..1307.
    Oracle: the reference front end's mel (fixture) cut by hand through a plain float64 restatement of the encoder
    (``reference_blocks``), which first reproduces the authors' embedding.py output on this clip (1001-frame chunks)."""
    weights = teacher_weights(fixtures_dir / "atst_frame_lightning.ckpt")
    mel = fx["atst_mel"]["a_13p10s"][0]

    def tokens(start: int, stop: int) -> torch.Tensor:
        return torch.cat(reference_blocks(weights, mel[:, start:stop]), dim=-1).float()

    reference = fx["expected_atst_frame"]["embedding_py"]["a_13p10s"]["timestamp_embedding"][0]
    first = tokens(0, 1000)  # the same 250 patches as the authors' first chunk, frames 0..1000 (frame 1000 dropped)
    torch.testing.assert_close(torch.cat([first, tokens(1001, 1311)]), reference, atol=ATOL, rtol=0)
    expected = torch.cat([first, tokens(1000, 1311)])[None]
    embeddings, timestamps = atst_frame.get_timestamp_embeddings(audio_of(fx, "a_13p10s"), frame_model)
    assert embeddings.shape == expected.shape == (1, 327, 384)
    torch.testing.assert_close(embeddings, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(embeddings[0, :250], reference[:250], atol=ATOL, rtol=0)  # the first window: the same
    assert (embeddings[0, 250:] - reference[250:]).abs().max() > 0.1  # the reference's 10 ms shift is not reproduced
    assert torch.equal(timestamps[0], centres(327))
    scene = atst_frame.get_scene_embeddings(audio_of(fx, "a_13p10s"), frame_model)
    torch.testing.assert_close(scene, expected.mean(dim=1), atol=ATOL, rtol=0)


def test_token_centre_is_the_centre_of_the_samples_it_reads():
    """Token i reads frames 4i..4i+3, frame j the samples 160j - 511 .. 160j + 511 (periodic Hann: the first of its
    1024 coefficients is 0), so token i reads 640i - 511 .. 640i + 991: centred on sample 640i + 240 = 40i + 15 ms."""
    audio = torch.randn(1, 16000, requires_grad=True)
    token = 5
    power = ATSTLogMel().power_mel(audio)[..., 4 * token : 4 * token + 4]
    (grad,) = torch.autograd.grad(power.sum(), audio)
    support = torch.nonzero(grad[0]).flatten()
    first, last = int(support[0]), int(support[-1])
    assert (first, last) == (640 * token - 511, 640 * token + 3 * 160 + 511)
    assert (first + last) / 2 / 16 == centres(token + 1)[-1]


# --- ATST-Clip -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["atst_clip_lightning.ckpt", "atst_clip_dino.ckpt"])
def test_clip_equals_reference_on_one_chunk(fx, fixtures_dir, checkpoint):
    """<= 600 frames: scene = get_intermediate_layers_chunks (CLS parts then mean parts), timestamp = the last
    block's patch tokens (get_intermediate_layers(n=1) without CLS); both official archive layouts."""
    model = atst_clip.load_model(str(fixtures_dir / checkpoint))
    last = atst_clip.load_model(str(fixtures_dir / checkpoint), blocks=1)
    assert (model.scene_embedding_size, model.timestamp_embedding_size, last.scene_embedding_size) == (768, 192, 384)
    for clip in ("a_0p73s", "a_5p20s"):
        expected = fx["expected_atst_clip"]["single"][clip]
        audio = audio_of(fx, clip)
        torch.testing.assert_close(atst_clip.get_scene_embeddings(audio, model), expected["chunks_n2"],
                                   atol=ATOL, rtol=0)
        torch.testing.assert_close(atst_clip.get_scene_embeddings(audio, last), expected["chunks_n1"],
                                   atol=ATOL, rtol=0)
        embeddings, timestamps = atst_clip.get_timestamp_embeddings(audio, model)
        torch.testing.assert_close(embeddings, expected["intermediate_n1"][:, 1:], atol=ATOL, rtol=0)
        assert torch.equal(timestamps[0], centres(embeddings.shape[1]))


@pytest.mark.parametrize("checkpoint", ["atst_clip_lightning.ckpt", "atst_clip_dino.ckpt"])
def test_clip_timestamps_of_a_9_97_s_clip_are_one_pass_over_the_whole_clip(fx, fixtures_dir, checkpoint):
    """998 frames = 249 tokens, more than one 6 s scene window: the timestamp embedding is the authors' frame-level
    use of ATST-Clip, get_intermediate_layers(x, length, 1) on the whole (<= 10 s) clip without the CLS token."""
    model = atst_clip.load_model(str(fixtures_dir / checkpoint))
    expected = fx["expected_atst_clip"]["multi_chunk"]["a_9p97s"]["intermediate_n1"][:, 1:]
    embeddings, timestamps = atst_clip.get_timestamp_embeddings(audio_of(fx, "a_9p97s"), model)
    assert embeddings.shape == expected.shape == (1, 249, 192)
    torch.testing.assert_close(embeddings, expected, atol=ATOL, rtol=0)
    assert torch.equal(timestamps[0], centres(249))


def test_clip_long_input_pools_windows_as_documented(fx, fixtures_dir):
    """1311 frames: scene windows of 600 frames (150, 150, 27 tokens), CLS part = the windows' CLS tokens weighted by
    their token counts, mean part = mean over all 327 patch tokens, block 0 then block 1; timestamps = the last
    block's patch tokens of 1000-frame windows (250 + 77 tokens). Oracle: the fixture mel cut by hand through
    ``reference_blocks``, which first reproduces the authors' chunked CLS output on this clip (601-frame chunks;
    the 109-frame third chunk is not counted)."""
    model = atst_clip.load_model(str(fixtures_dir / "atst_clip_lightning.ckpt"))
    weights = teacher_weights(fixtures_dir / "atst_clip_lightning.ckpt")
    mel = fx["atst_mel"]["a_13p10s"][0]
    reference = fx["expected_atst_clip"]["multi_chunk"]["a_13p10s"]
    chunks = [reference_blocks(weights, mel[:, a:b]) for a, b in ((0, 601), (601, 1202))]
    authors_cls = torch.cat([(chunks[0][block][0] + chunks[1][block][0]) / 2 for block in (0, 1)])
    torch.testing.assert_close(authors_cls.float(), reference["chunks_n2_cls_only"][0], atol=ATOL, rtol=0)

    windows = [reference_blocks(weights, mel[:, a:b]) for a, b in ((0, 600), (600, 1200), (1200, 1311))]
    counts = [len(window[0]) - 1 for window in windows]
    assert counts == [150, 150, 27]
    cls = [sum(n * window[block][0] for n, window in zip(counts, windows, strict=True)) / 327 for block in (0, 1)]
    means = [torch.cat([window[block][1:] for window in windows]).mean(dim=0) for block in (0, 1)]
    scene = atst_clip.get_scene_embeddings(audio_of(fx, "a_13p10s"), model)
    torch.testing.assert_close(scene, torch.cat(cls + means).float()[None], atol=ATOL, rtol=0)
    embeddings, timestamps = atst_clip.get_timestamp_embeddings(audio_of(fx, "a_13p10s"), model)
    ten_s = [reference_blocks(weights, mel[:, a:b])[-1][1:] for a, b in ((0, 1000), (1000, 1311))]
    torch.testing.assert_close(embeddings, torch.cat(ten_s).float()[None], atol=ATOL, rtol=0)
    assert torch.equal(timestamps[0], centres(327))
    # The reference's chunk-averaging quirk is not reproduced (documented deviation):
    assert (scene - reference["chunks_n2"]).abs().max() > 0.1


# --- ATST-C2F --------------------------------------------------------------------------------------------------------


def test_c2f_reads_the_student_of_a_distillation_archive(fx, fixtures_dir, tmp_path):
    """Default n=1 (C2F recipe): the last block per token; scene = token mean."""
    path = write_c2f_checkpoint(fixtures_dir, tmp_path / "c2f.ckpt")
    model = atst_c2f.load_model(str(path))
    expected = fx["expected_atst_frame"]["single"]["a_5p20s"]
    audio = audio_of(fx, "a_5p20s")
    assert model.timestamp_embedding_size == model.scene_embedding_size == 192
    torch.testing.assert_close(atst_c2f.get_timestamp_embeddings(audio, model)[0], expected["n1_frames"],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(atst_c2f.get_scene_embeddings(audio, model), expected["n1_scene"], atol=ATOL, rtol=0)


# --- lengths, batches, precision, options ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(fixtures_dir, tmp_path_factory, frame_model):
    """One fixture model per ATST HEAR module."""
    c2f = write_c2f_checkpoint(fixtures_dir, tmp_path_factory.mktemp("c2f") / "c2f.ckpt")
    clip = atst_clip.load_model(str(fixtures_dir / "atst_clip_lightning.ckpt"))
    return {atst_frame: frame_model, atst_clip: clip, atst_c2f: atst_c2f.load_model(str(c2f))}


@pytest.mark.parametrize("hear", [atst_frame, atst_clip, atst_c2f], ids=lambda module: module.__name__)
@pytest.mark.parametrize("n_samples", [1, 100, 239, 240, 512, 513, 639, 640, 1120])
def test_any_length_of_at_least_one_sample(models, hear, n_samples):
    """Short audio is zero-padded to 513 samples (4 frames = one token, centred at 15 ms); a clip shorter than 15 ms
    (240 samples) has its one token timestamped at its midpoint, inside the audio."""
    model = models[hear]
    audio = torch.rand(2, n_samples, generator=torch.Generator().manual_seed(n_samples)) * 2 - 1
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    n_tokens = (max(n_samples, 513) // 160 + 1) // 4
    assert embeddings.shape == (2, n_tokens, model.timestamp_embedding_size)
    assert bool(torch.isfinite(embeddings).all())
    duration_ms = n_samples / 16
    expected = torch.tensor([duration_ms / 2]) if n_samples < 240 else centres(n_tokens)
    assert torch.equal(timestamps, expected.expand(2, -1))
    assert 0 < float(timestamps.max()) <= duration_ms
    assert hear.get_scene_embeddings(audio, model).shape == (2, model.scene_embedding_size)


def speech_commands(data_dir, n):
    files = sorted((data_dir / "speech_commands_small").rglob("*.wav"))[:n]
    clips = [torch.from_numpy(sf.read(f, dtype="float32")[0]) for f in files]
    assert all(sf.info(f).samplerate == 16000 for f in files)
    return clips


@pytest.mark.parametrize("module", ["atst_frame", "atst_clip", "atst_c2f"])
def test_clip_alone_equals_clip_in_a_padded_batch(data_dir, fixtures_dir, fx, tmp_path, module):
    """Real speech clips zero-padded to a common length (as heareval does); each one alone gives the same output."""
    path = {"atst_frame": fixtures_dir / "atst_frame_lightning.ckpt",
            "atst_clip": fixtures_dir / "atst_clip_lightning.ckpt",
            "atst_c2f": write_c2f_checkpoint(fixtures_dir, tmp_path / "c2f.ckpt")}[module]
    hear = {"atst_frame": atst_frame, "atst_clip": atst_clip, "atst_c2f": atst_c2f}[module]
    model = hear.load_model(str(path))
    clips = [*speech_commands(data_dir, 3), audio_of(fx, "a_13p10s")[0]]  # 13.1 s: several windows
    length = max(len(c) for c in clips)
    batch = torch.stack([torch.nn.functional.pad(c, (0, length - len(c))) for c in clips])
    scenes = hear.get_scene_embeddings(batch, model)
    stamps = hear.get_timestamp_embeddings(batch, model)[0]
    for index in range(len(clips)):
        alone = batch[index : index + 1]
        torch.testing.assert_close(hear.get_scene_embeddings(alone, model), scenes[index : index + 1],
                                   atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(hear.get_timestamp_embeddings(alone, model)[0], stamps[index : index + 1],
                                   atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize(("hear", "checkpoint"), [(atst_frame, "atst_frame_lightning.ckpt"),
                                                  (atst_clip, "atst_clip_lightning.ckpt"),
                                                  (atst_c2f, "c2f.ckpt")])
def test_bf16_within_two_percent_of_fp32(data_dir, fixtures_dir, tmp_path, hear, checkpoint):
    """precision="bf16": encoder under bfloat16 autocast, front-end in float32, float32 outputs."""
    audio = torch.stack([c[:16000] for c in speech_commands(data_dir, 4) if len(c) >= 16000])
    path = write_c2f_checkpoint(fixtures_dir, tmp_path / checkpoint) if hear is atst_c2f else fixtures_dir / checkpoint
    outputs = {}
    for precision in ("fp32", "bf16"):
        model = hear.load_model(str(path), precision=precision)
        outputs[precision] = (hear.get_scene_embeddings(audio, model), hear.get_timestamp_embeddings(audio, model)[0])
    for fp32, bf16 in zip(outputs["fp32"], outputs["bf16"], strict=True):
        assert bf16.dtype == torch.float32
        error = float((bf16 - fp32).norm() / fp32.norm())
        assert 0 < error < 0.02


def test_block_selection_by_indices(fx, frame_ckpt):
    model = atst_frame.load_model(frame_ckpt, blocks=[0])
    expected = fx["expected_atst_frame"]["single"]["a_0p73s"]["n2_frames"][..., :192]
    torch.testing.assert_close(atst_frame.get_timestamp_embeddings(audio_of(fx, "a_0p73s"), model)[0], expected,
                               atol=ATOL, rtol=0)


def test_clip_timestamp_blocks_select_and_concatenate_blocks(fx, fixtures_dir):
    """ATST-Clip's ``timestamp_blocks``: default the last block (the reference's intermediate_n1 patch tokens);
    ``timestamp_blocks=2`` concatenates block 0 then block 1, the same tokens as each block alone."""
    checkpoint = fixtures_dir / "atst_clip_lightning.ckpt"
    audio = audio_of(fx, "a_5p20s")
    last = atst_clip.get_timestamp_embeddings(audio, atst_clip.load_model(checkpoint))[0]
    torch.testing.assert_close(last, fx["expected_atst_clip"]["single"]["a_5p20s"]["intermediate_n1"][:, 1:],
                               atol=ATOL, rtol=0)
    both_model = atst_clip.load_model(checkpoint, timestamp_blocks=2)
    assert both_model.timestamp_embedding_size == 2 * 192 and both_model.scene_embedding_size == 2 * 2 * 192
    both = atst_clip.get_timestamp_embeddings(audio, both_model)[0]
    first = atst_clip.get_timestamp_embeddings(audio, atst_clip.load_model(checkpoint, timestamp_blocks=[0]))[0]
    assert both.shape == (1, last.shape[1], 384)
    torch.testing.assert_close(both[..., 192:], last, atol=0, rtol=0)
    torch.testing.assert_close(both[..., :192], first, atol=0, rtol=0)
    assert not torch.allclose(first, last, atol=1e-3)


@pytest.mark.parametrize(("options", "message"), [
    ({"blocks": 3}, "choose 1..2"),
    ({"blocks": [2]}, "within 0..1"),
    ({"precision": "fp16"}, "precision='fp16'"),
    ({"size": "base"}, "only applies with random_weights=True"),
    ({"random_weights": True, "size": "base"}, "not both"),
    ({"random_weights": "no", "size": "small"}, "random_weights='no': give true or false"),
])
def test_bad_options_are_refused(frame_ckpt, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        atst_frame.load_model(frame_ckpt, **options)


def test_random_weights_only_when_asked_and_with_a_size(monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match="needs size="):
        atst_clip.load_model(random_weights=True)
    model = atst_clip.load_model(random_weights=True, size="small")
    again = atst_clip.load_model(random_weights=True, size="small")
    assert (model.scene_embedding_size, model.timestamp_embedding_size) == (2 * 12 * 384, 384)
    assert torch.equal(model.encoder.pos_embed, again.encoder.pos_embed)  # seeded


@pytest.mark.parametrize(("hear", "where"), [(atst_frame, "1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ"),
                                             (atst_clip, "atst/base.ckpt"), (atst_c2f, "train_distill.py")])
def test_missing_weights_say_where_to_get_them(monkeypatch, hear, where):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError) as error:
        hear.load_model()
    message = str(error.value)
    assert where in message and WEIGHTS_DIR_ENV in message and "random_weights=True" in message
    assert "--model-option random_weights=true" in message  # the command-line spelling too


def test_weights_directory_from_the_environment(monkeypatch, fixtures_dir, tmp_path, fx):
    shutil.copy(fixtures_dir / "atst_frame_lightning.ckpt", tmp_path / "atstframe_base.ckpt")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    model = atst_frame.load_model(blocks=1)
    with pytest.raises(WeightsNotFoundError, match=f"set {WEIGHTS_DIR_ENV}={tmp_path} to have it looked up"):
        atst_frame.load_model(tmp_path)  # the folder given as the file: the message points to the variable
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "typo"))
    with pytest.raises(WeightsNotFoundError, match="typo, which is not a directory"):
        atst_frame.load_model()
    expected = fx["expected_atst_frame"]["single"]["a_0p73s"]["n1_scene"]
    torch.testing.assert_close(atst_frame.get_scene_embeddings(audio_of(fx, "a_0p73s"), model), expected,
                               atol=ATOL, rtol=0)


def test_clip_and_frame_checkpoints_are_not_interchangeable(fixtures_dir):
    with pytest.raises(CheckpointError):
        atst_clip.load_model(str(fixtures_dir / "atst_frame_lightning.ckpt"))
    with pytest.raises(ValueError, match="CLS"):
        atst_clip.ATSTClipModel(load_encoder(fixtures_dir / "atst_frame_lightning.ckpt", "atst_frame"), None, None,
                                "fp32")


def load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"
    spec = importlib.util.spec_from_file_location("bench_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("hear", "checkpoint", "windows"), [
    (atst_frame, "atst_frame_lightning.ckpt", [(250, 0), (77, 0)]),  # 13.1 s: 250 + 77 tokens, no CLS
    (atst_clip, "atst_clip_lightning.ckpt", [(150, 1), (150, 1), (27, 1)]),  # 150 + 150 + 27 tokens, CLS each
])
def test_benchmark_flop_count_is_the_analytic_formula(fx, fixtures_dir, hear, checkpoint, windows):
    """The benchmark's counted FLOPs (every GEMM and the attention kernel) equal L(24ND² + 4N²D) + 2·256·D·n."""
    bench = load_benchmark()
    model = hear.load_model(str(fixtures_dir / checkpoint))
    counted = bench.count_flops(lambda: hear.get_scene_embeddings(audio_of(fx, "a_13p10s"), model))
    analytic = sum(bench.atst_window_flops(n, cls, 192, 2) for n, cls in windows)
    mel_matmul = 2 * 1311 * 513 * 64  # the front-end's mel filterbank product
    assert counted == analytic + mel_matmul


def test_benchmark_cuda_without_a_gpu_is_a_usage_error(monkeypatch, capsys):
    bench = load_benchmark()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as error:
        bench.main(["--models", "mel", "--device", "cuda"])
    assert error.value.code == 2
    assert "--device cuda: no CUDA device is available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:  # an unknown model is refused before anything is measured
        bench.main(["--models", "foo"])
    assert error.value.code == 2 and "invalid choice: 'foo'" in capsys.readouterr().err


def test_benchmark_counts_cuda_attention_kernels():
    """On CUDA, SDPA runs as flash, memory-efficient or cuDNN attention: torch's flop counter must count each."""
    from torch.utils.flop_counter import FlopCounterMode

    registry = FlopCounterMode(display=False).flop_registry
    aten = torch.ops.aten
    for op in (aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_efficient_attention,
               aten._scaled_dot_product_cudnn_attention):
        assert op in registry
