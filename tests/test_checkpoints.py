"""Checkpoint loading: every released layout selects the right encoder (fixtures README §6-7, docs/atst.md §3),
and wrong, unsafe or damaged files are refused with a CheckpointError that says what and where."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hear_atst.checkpoints import CheckpointError, load_torch_file, select_prefix
from hear_atst.encoders import convert_checkpoint, load_encoder
from hear_atst.encoders.atst import build_encoder
from hear_atst.encoders.atst_recipes import clip_intermediate_layers_chunks, frame_intermediate_layers

ATOL = 1e-5
TEACHER = "model.teacher.encoder."


@pytest.fixture(scope="module")
def frame_ckpt(fixtures_dir: Path) -> dict:
    return load_torch_file(fixtures_dir / "atst_frame_lightning.ckpt")


@pytest.fixture(scope="module")
def clip_ckpt(fixtures_dir: Path) -> dict:
    return load_torch_file(fixtures_dir / "atst_clip_lightning.ckpt")


@pytest.fixture(scope="module")
def frame_case(fixtures_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mel, length, expected n2 frame output) of the 9.97 s clip: 249 tokens, 2 blocks."""
    expected = torch.load(fixtures_dir / "expected_atst_frame.pt")["single"]["a_9p97s"]
    mel = torch.load(fixtures_dir / "atst_mel.pt")["a_9p97s"].unsqueeze(0)
    return mel, expected["length"], expected["n2_frames"]


def frame_error(encoder, frame_case) -> float:
    mel, length, expected = frame_case
    with torch.no_grad():
        return float((frame_intermediate_layers(encoder, mel, length, 2, False) - expected).abs().max())


# --- the right encoder is selected ---------------------------------------------------------------------------------


def test_lightning_archive_yields_exactly_the_teacher_encoder(fixtures_dir, frame_ckpt, clip_ckpt):
    for name, kind, ckpt in (("atst_frame_lightning.ckpt", "atst_frame", frame_ckpt),
                             ("atst_clip_lightning.ckpt", "atst_clip", clip_ckpt)):
        teacher = select_prefix(ckpt["state_dict"], TEACHER)
        state = load_encoder(fixtures_dir / name, kind).state_dict()
        assert set(state) == set(teacher) and len(state) == (28 if kind == "atst_frame" else 29)
        assert all(torch.equal(state[key], teacher[key]) for key in teacher)


def test_dino_and_lightning_clip_archives_hold_the_same_teacher(fixtures_dir):
    dino = load_encoder(fixtures_dir / "atst_clip_dino.ckpt", "atst_clip").state_dict()
    lightning = load_encoder(fixtures_dir / "atst_clip_lightning.ckpt", "atst_clip").state_dict()
    assert set(dino) == set(lightning) and "mask_embed" in dino
    assert all(torch.equal(dino[key], lightning[key]) for key in dino)


def test_student_or_mixed_tensors_fail_the_reference_comparison(fixtures_dir, frame_ckpt, frame_case):
    """README §6: the comparisons must catch a loader that takes the student or mixes the two."""
    teacher = select_prefix(frame_ckpt["state_dict"], TEACHER)
    student = select_prefix(frame_ckpt["state_dict"], "model.student.encoder.")
    assert frame_error(load_encoder(fixtures_dir / "atst_frame_lightning.ckpt", "atst_frame"), frame_case) <= ATOL
    assert frame_error(build_encoder("atst_frame", student), frame_case) > 1.0
    mixed = {**teacher, "blocks.1.mlp.fc2.bias": student["blocks.1.mlp.fc2.bias"]}
    assert frame_error(build_encoder("atst_frame", mixed), frame_case) > 1e-3


# --- wrong, unsafe and damaged files ---------------------------------------------------------------------------


def test_frame_checkpoint_is_refused_as_clip_and_vice_versa(fixtures_dir):
    frame_file = fixtures_dir / "atst_frame_lightning.ckpt"
    with pytest.raises(CheckpointError) as error:
        load_encoder(frame_file, "atst_clip")
    assert str(frame_file) in str(error.value)
    assert "expected an ATST-Clip encoder (cls_token, norm.*) but found ATST-Frame keys (norm_frame.*)" in str(
        error.value)
    with pytest.raises(CheckpointError, match=r"expected an ATST-Frame encoder .* found ATST-Clip keys \(cls_token"):
        load_encoder(fixtures_dir / "atst_clip_lightning.ckpt", "atst_frame")
    with pytest.raises(CheckpointError, match=r"no ATST-Frame encoder found.*\['teacher'\]: module\.backbone\.\*"):
        load_encoder(fixtures_dir / "atst_clip_dino.ckpt", "atst_frame")  # the DINO layout is ATST-Clip only


class RunsCode:
    """Unpickling this calls ``os.system`` (a malicious checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, frame_ckpt):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({**frame_ckpt, "callbacks": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle") as error:
        load_encoder(path, "atst_frame")
    assert str(path) in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


def test_a_plain_pickle_that_runs_code_is_refused_as_unsafe(tmp_path):
    """Protocol 4+ pickles stop torch's unpickler at their first opcode ("Unsupported operand 149"); the message
    says the file was refused as unsafe and what it would call, and the code never runs."""
    import pickle

    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": RunsCode(marker)}, protocol=4))
    with pytest.raises(CheckpointError) as error:
        load_torch_file(path)
    assert str(error.value) == (f"{path}: refused to unpickle it as unsafe: it is a plain pickle whose loading would "
                                f"import and call {os.system.__module__}.system; only torch checkpoints of tensors "
                                "(and numpy scalars/dtypes, argparse.Namespace) are loaded")
    assert not marker.exists()


def test_truncated_or_missing_file_names_the_file(tmp_path, fixtures_dir):
    data = (fixtures_dir / "atst_frame_lightning.ckpt").read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_encoder(path, "atst_frame")
    assert str(path) in str(error.value)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_encoder(tmp_path / "absent.ckpt", "atst_frame")


def test_junk_file_is_named_and_called_not_a_torch_checkpoint(tmp_path):
    """Five bytes of text: torch's legacy loader fails with a bare ``KeyError: 101``; the message explains it."""
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"hello")
    with pytest.raises(CheckpointError) as error:
        load_encoder(path, "atst_frame")
    message = str(error.value)
    assert message.startswith(f"{path}: not a torch checkpoint, or a truncated or corrupt one")
    assert "KeyError: 101" in message
    # random bytes fail inside the weights-only unpickler: still "corrupt", never "outside the allowlist" (whose
    # torch text suggests the unsafe weights_only=False)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"not a torch checkpoint.*pickle stream is invalid") as error:
        load_encoder(path, "atst_frame")
    assert "allowlist" not in str(error.value) and "weights_only" not in str(error.value)


def test_missing_unexpected_and_misshapen_tensors_are_listed(tmp_path, frame_ckpt):
    teacher = select_prefix(frame_ckpt["state_dict"], TEACHER)
    path = tmp_path / "raw.pt"
    broken = {key: value for key, value in teacher.items() if key != "blocks.1.mlp.fc2.bias"}
    broken["head.linear.weight"] = torch.zeros(10, 192)
    broken["blocks.0.attn.qkv.weight"] = torch.zeros(500, 192)
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as error:
        load_encoder(path, "atst_frame")
    message = str(error.value)
    assert message.startswith(str(path))
    assert "1 missing keys: blocks.1.mlp.fc2.bias" in message
    assert "1 unexpected keys: head.linear.weight" in message
    assert "blocks.0.attn.qkv.weight: checkpoint (500, 192) vs model (576, 192)" in message
    with pytest.raises(CheckpointError, match="pos_embed"):
        build_encoder("atst_frame", {k: v for k, v in teacher.items() if k != "pos_embed"})


# --- other ATST layouts, synthesized from the fixture tensors ----------------------------------------------------


def c2f_distillation_archive(clip_ckpt: dict, frame_ckpt: dict, classes: int = 527) -> dict:
    """``DistillLightningModule`` (docs/atst.md §3.2): fine-tuned ATST-Clip teacher + heads, FrameAST student."""
    clip = select_prefix(clip_ckpt["state_dict"], TEACHER)
    frame = select_prefix(frame_ckpt["state_dict"], TEACHER)
    dim = frame["pos_embed"].shape[-1]
    state = {f"model.teacher.encoder.{k}": v for k, v in clip.items()}
    state |= {"model.teacher.head.norm.running_mean": torch.zeros(2 * dim),
              "model.teacher.head.norm.running_var": torch.ones(2 * dim),
              "model.teacher.head.norm.num_batches_tracked": torch.tensor(5),
              "model.teacher.head.linear.weight": torch.randn(classes, 2 * dim),
              "model.teacher.head.linear.bias": torch.zeros(classes)}
    state |= {f"model.student.{k}": v for k, v in frame.items()}
    state |= {"model.linear.norm.running_mean": torch.zeros(dim), "model.linear.norm.running_var": torch.ones(dim),
              "model.linear.norm.num_batches_tracked": torch.tensor(5),
              "model.linear.linear.weight": torch.randn(classes, dim), "model.linear.linear.bias": torch.zeros(classes)}
    return {"epoch": 9, "global_step": 100, "pytorch-lightning_version": "2.2.1", "state_dict": state,
            "optimizer_states": [{"state": {}, "param_groups": []}], "lr_schedulers": [],
            "hyper_parameters": {"arch": "base", "lambda_d": np.float64(1.0), "nclass": classes}}


def test_c2f_distillation_archive_loads_the_student(tmp_path, clip_ckpt, frame_ckpt, frame_case):
    path = tmp_path / "c2f.ckpt"
    torch.save(c2f_distillation_archive(clip_ckpt, frame_ckpt), path)
    encoder = load_encoder(path, "atst_c2f")
    assert encoder.kind == "atst_frame" and encoder.config["depth"] == 2
    assert frame_error(encoder, frame_case) <= ATOL
    assert convert_checkpoint(path, tmp_path / "c2f.safetensors")["kind"] == "atst_c2f"  # detected
    for kind in ("atst_frame", "atst_clip"):  # not an SSL archive: its teacher is not an ATST-Clip/Frame SSL model
        with pytest.raises(CheckpointError, match=r"no ATST-(Frame|Clip) encoder found.*model\.linear\.\*"):
            load_encoder(path, kind)


def test_teacher_only_lightning_archive_is_refused_naming_the_marker(tmp_path, frame_ckpt):
    """The SSL archive is recognised by its student's key; a teacher-only archive (not a released format) gets a
    message that says so rather than one claiming the teacher keys were missing."""
    path = tmp_path / "teacher_only.ckpt"
    torch.save({"state_dict": {k: v for k, v in frame_ckpt["state_dict"].items() if k.startswith(TEACHER)}}, path)
    with pytest.raises(CheckpointError, match=r"model\.teacher\.encoder\.\* in \['state_dict'\] \(recognised by its "
                                              r"model\.student\.encoder\.pos_embed\)"):
        load_encoder(path, "atst_frame")


def test_fine_tuned_layouts_load_the_encoder(tmp_path, fixtures_dir, clip_ckpt, frame_ckpt, frame_case):
    """FineTuningPLModule (``encoder.encoder.*`` + ``head.*``) and the frame-level C2F fine-tune
    (``encoder.encoder.frame_encoder.*`` beside ``encoder.encoder.teacher_module.*``)."""
    clip = select_prefix(clip_ckpt["state_dict"], TEACHER)
    frame = select_prefix(frame_ckpt["state_dict"], TEACHER)
    head = {"head.linear.weight": torch.randn(50, 384), "head.linear.bias": torch.zeros(50)}
    cases = {
        "atst_frame": {f"encoder.encoder.{k}": v for k, v in frame.items()} | head,
        "atst_c2f": {f"encoder.encoder.frame_encoder.{k}": v for k, v in frame.items()}
        | {f"encoder.encoder.teacher_module.{k}": v for k, v in clip.items()} | head,
    }
    for kind, state in cases.items():
        torch.save({"pytorch-lightning_version": "2.2.1", "state_dict": state}, tmp_path / f"{kind}.ckpt")
        assert frame_error(load_encoder(tmp_path / f"{kind}.ckpt", kind), frame_case) <= ATOL
    torch.save({"state_dict": {f"encoder.encoder.{k}": v for k, v in clip.items()} | head}, tmp_path / "clip.ckpt")
    expected = torch.load(fixtures_dir / "expected_atst_clip.pt")["single"]["a_5p20s"]
    mel = torch.load(fixtures_dir / "atst_mel.pt")["a_5p20s"].unsqueeze(0)
    with torch.no_grad():
        out = clip_intermediate_layers_chunks(load_encoder(tmp_path / "clip.ckpt", "atst_clip"), mel,
                                              expected["length"], 2)
    torch.testing.assert_close(out, expected["chunks_n2"], atol=ATOL, rtol=0)


# --- full-size official layouts (keys_official.json) ---------------------------------------------------------------


def stand_in(value: float, shape: list[int], dtype: str) -> torch.Tensor:
    """A tensor of the official shape and dtype holding one number (stride 0: no memory, tiny files)."""
    return torch.full((1,), value, dtype=getattr(torch, dtype)).expand(shape) if shape else torch.tensor(
        value, dtype=getattr(torch, dtype))


def stand_in_state(layout: dict[str, dict], first: int = 0) -> dict[str, torch.Tensor]:
    """Every key of an official layout, tensor ``i`` filled with ``first + i + 1``: values identify the source key."""
    return {key: stand_in(first + i + 1, info["shape"], info["dtype"]) for i, (key, info) in enumerate(layout.items())}


def official_archive(name: str, keys: dict) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(archive in the official structure, the tensors the encoder must come from, prefix of those tensors)."""
    spec = keys.get(name, {})
    if name.endswith("_lightning"):
        state = stand_in_state(spec["state_dict"])
        hyper = {key: "x" for key in spec["hyper_parameters_keys"]} | {"learning_rate": np.float64(5e-4)}
        archive = {key: {} for key in spec["top_level_keys"]} | {
            "epoch": 199, "global_step": 39010, "pytorch-lightning_version": "2.2.1", "state_dict": state,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": np.float64(1e-4)}]}], "lr_schedulers": [],
            "hparams_name": "kwargs", "hyper_parameters": hyper}
        return archive, state, spec["encoder_prefix"]
    if name == "atst_clip_base_dino":
        teacher = stand_in_state(spec["teacher"])
        args = argparse.Namespace(arch="ast_base", pos_type="cut", use_cls=True, anchor_len=[6.0, 6.0],
                                  lr=np.float64(5e-4))
        archive = {"student": stand_in_state(spec["student"], 1000), "teacher": teacher, "optimizer": {},
                   "epoch": 100, "args": args, "byol_loss": 0.1}
        return archive, teacher, "module.backbone."
    if name == "atst_c2f_base_distill":  # docs/atst.md §3.2: AST teacher + FrameAST student
        clip = {k.replace("module.backbone.", ""): v for k, v in keys["atst_clip_base_dino"]["teacher"].items()
                if k.startswith("module.backbone.")}
        frame = select_prefix(keys["atst_frame_base_lightning"]["state_dict"], TEACHER)
        state = stand_in_state({f"model.teacher.encoder.{k}": v for k, v in clip.items()}
                               | {f"model.student.{k}": v for k, v in frame.items()}
                               | {"model.linear.linear.weight": {"shape": [527, 768], "dtype": "float32"}})
        return {"pytorch-lightning_version": "2.2.1", "state_dict": state}, state, "model.student."
    asit = keys["asit_base"]["pretrainedsed_ASIT_ssl"]
    state = stand_in_state(asit["state_dict"])
    return state, state, asit["encoder_prefix"]


FULL_SIZE = [  # (layout, kind, embed_dim, heads, parameters)
    ("atst_clip_small_lightning", "atst_clip", 384, 6, 21_476_352),
    ("atst_frame_small_lightning", "atst_frame", 384, 6, 21_475_968),
    ("atst_frame_base_lightning", "atst_frame", 768, 12, 85_419_264),
    ("atst_clip_base_dino", "atst_clip", 768, 12, 85_420_032),
    ("atst_c2f_base_distill", "atst_c2f", 768, 12, 85_419_264),
    ("asit_base/pretrainedsed_ASIT_ssl", "asit", 768, 12, 85_482_240),  # dispatch to the ASiT family
]


@pytest.mark.parametrize("name,kind,embed_dim,heads,params", FULL_SIZE, ids=[case[0] for case in FULL_SIZE])
def test_full_size_official_layout_loads_the_right_encoder(tmp_path, fixtures_dir, name, kind, embed_dim, heads,
                                                           params):
    keys = json.loads((fixtures_dir / "keys_official.json").read_text())
    archive, source_state, prefix = official_archive(name, keys)
    path = tmp_path / "official.ckpt"
    torch.save(archive, path)
    encoder = load_encoder(path, kind)
    config = encoder.config
    assert (config["embed_dim"], config["depth"], config["num_heads"]) == (embed_dim, 12, heads)
    assert sum(p.numel() for p in encoder.parameters()) == params
    for key, tensor in encoder.state_dict().items():  # each parameter came from the same-named selected tensor
        value = float(source_state[prefix + key].reshape(-1)[0])
        corners = (tensor[(0,) * tensor.ndim], tensor[tuple(size - 1 for size in tensor.shape)])
        assert [float(corner) for corner in corners] == [value, value], key
