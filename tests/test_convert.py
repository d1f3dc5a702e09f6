"""``hear-atst convert``: the encoder alone as safetensors with metadata; loading it back is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hear_atst.checkpoints import CheckpointError, load_safetensors_file, save_safetensors_file
from hear_atst.cli import app
from hear_atst.encoders import FORMAT, convert_checkpoint, load_encoder
from hear_atst.encoders.atst_recipes import clip_intermediate_layers_chunks, frame_intermediate_layers
from hear_atst.weights import WEIGHTS_DIR_ENV

CASES = [  # (fixture file, kind, tensors in the encoder)
    ("atst_frame_lightning.ckpt", "atst_frame", 28),
    ("atst_clip_lightning.ckpt", "atst_clip", 29),
    ("atst_clip_dino.ckpt", "atst_clip", 29),
]


@pytest.fixture(scope="module")
def mel(fixtures_dir: Path) -> torch.Tensor:
    return torch.load(fixtures_dir / "atst_mel.pt")["a_13p10s"].unsqueeze(0)


@torch.no_grad()
def outputs(encoder, mel: torch.Tensor) -> torch.Tensor:
    length = torch.tensor([mel.shape[-1]])
    if encoder.kind == "atst_clip":
        return clip_intermediate_layers_chunks(encoder, mel, length, 2)
    return frame_intermediate_layers(encoder, mel[..., :1001], length.clamp(max=1001), 2, False)


@pytest.mark.parametrize("name,kind,n_tensors", CASES)
def test_convert_round_trip_is_exact(tmp_path, fixtures_dir, mel, name, kind, n_tensors):
    source = fixtures_dir / name
    target = tmp_path / "encoder.safetensors"
    metadata = convert_checkpoint(source, target)  # kind detected
    manifest = json.loads((fixtures_dir / "manifest.json").read_text())["files"][name]
    assert metadata == {"format": FORMAT, "kind": kind, "config": metadata["config"],
                        "source_sha256": manifest["sha256"]}
    assert json.loads(metadata["config"]) == {"kind": kind, "embed_dim": 192, "depth": 2, "num_heads": 3,
                                              "pos_embed_slots": 251}
    tensors, stored = load_safetensors_file(target)
    assert stored == metadata and len(tensors) == n_tensors  # the encoder alone: no student, heads or optimizer
    assert target.stat().st_size < source.stat().st_size / 1.1
    original, converted = load_encoder(source, kind), load_encoder(target, kind)
    assert torch.equal(outputs(original, mel), outputs(converted, mel))
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind


def test_converted_file_is_checked_against_the_requested_kind_and_its_config(tmp_path, fixtures_dir):
    target = tmp_path / "frame.safetensors"
    convert_checkpoint(fixtures_dir / "atst_frame_lightning.ckpt", target, "atst_frame")
    for kind in ("atst_clip", "atst_c2f"):
        with pytest.raises(CheckpointError, match=r"holds a 'atst_frame' encoder, but '.*' was asked for"):
            load_encoder(target, kind)
    tensors, metadata = load_safetensors_file(target)
    tampered = tmp_path / "tampered.safetensors"
    save_safetensors_file(tensors, tampered, {**metadata, "config": json.dumps({"kind": "atst_frame", "depth": 12})})
    with pytest.raises(CheckpointError, match=r"stored config .* does not match the tensors"):
        load_encoder(tampered, "atst_frame")
    save_safetensors_file(tensors, tampered, {**metadata, "format": "hear-atst-encoder/9"})
    with pytest.raises(CheckpointError, match="is not supported"):
        load_encoder(tampered, "atst_frame")
    data = target.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as error:
        load_encoder(truncated, "atst_frame")
    assert str(truncated) in str(error.value)


def test_plain_safetensors_state_dict_loads_through_the_layouts(tmp_path, fixtures_dir, mel):
    """A safetensors file without our metadata is a plain tensor dict: prefixes are resolved like a .pt file."""
    source = fixtures_dir / "atst_frame_lightning.ckpt"
    encoder = load_encoder(source, "atst_frame")
    plain = tmp_path / "plain.safetensors"
    save_safetensors_file({f"encoder.encoder.{k}": v for k, v in encoder.state_dict().items()}, plain, {})
    with pytest.raises(CheckpointError, match="no ATST-Frame encoder found"):
        load_encoder(plain, "atst_frame")  # encoder.encoder.* is a Lightning state_dict layout, not a bare one
    save_safetensors_file(encoder.state_dict(), plain, {})
    assert torch.equal(outputs(load_encoder(plain, "atst_frame"), mel), outputs(encoder, mel))


def test_failed_convert_writes_nothing(tmp_path, fixtures_dir):
    target = tmp_path / "out.safetensors"
    with pytest.raises(CheckpointError, match="no known encoder in this file"):
        convert_checkpoint(fixtures_dir / "atst_mel.pt", target)
    with pytest.raises(CheckpointError, match="expected an ATST-Clip encoder"):
        convert_checkpoint(fixtures_dir / "atst_frame_lightning.ckpt", target, "atst_clip")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_cli_convert_and_models(tmp_path, fixtures_dir, monkeypatch):
    runner = CliRunner()
    target = tmp_path / "clip.safetensors"
    result = runner.invoke(app, ["convert", str(fixtures_dir / "atst_clip_dino.ckpt"), str(target)])
    assert result.exit_code == 0, result.output
    assert "kind atst_clip" in result.output and target.is_file()
    result = runner.invoke(app, ["convert", str(fixtures_dir / "atst_clip_dino.ckpt"), str(tmp_path / "x"),
                                 "--kind", "atst_frame"])
    assert result.exit_code == 2 and "no ATST-Frame encoder found" in result.output
    result = runner.invoke(app, ["convert", str(tmp_path / "absent.ckpt"), str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'absent.ckpt'}: no such checkpoint file"
    result = runner.invoke(app, ["convert", str(fixtures_dir / "atst_clip_dino.ckpt"), str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith(f"error: {tmp_path} is a directory")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "atst_c2f.ckpt").write_bytes(b"")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    result = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 2}
    assert set(rows) >= {"atst_frame", "atst_clip", "atst_c2f", "asit", "mel", "crepe"}
    assert "atst_c2f.ckpt" in rows["atst_c2f"] and str(tmp_path) in rows["atst_c2f"]
    assert "missing" in rows["atst_frame"] and "not needed" in rows["mel"]
