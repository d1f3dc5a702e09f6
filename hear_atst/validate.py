"""The project's strict HEAR check: everything ``hear-validator`` checks, and what it does not.

``hear-validator`` (hearvalidator 2021.0.2) checks the API, dtypes and shapes on three short clips and that the
timestamps are regularly spaced. :func:`validate_module` also checks, with the model's own outputs:

- ``api`` / ``attributes`` / ``eval-mode``: the three functions, a ``torch.nn.Module`` with ``sample_rate`` in the HEAR
  list and integer embedding sizes, no module left in training mode;
- ``shapes``: float32 embeddings *and timestamps*, HEAR shapes, finite values, for 1.07 / 1.98 / 4.0 s clips (as
  hear-validator) and 4 x 2.74 s scene clips;
- ``timestamps``: regular spacing (< 1 ms), one hop for every length, the same grid for every sound and length,
  the first centre inside the first hop (``0 <= t0 < hop``), the last inside the audio, and the end covered as the
  start is (``duration - last < hop + t0``);
- ``centring``: short bursts at known times are found at the reported timestamps: the token whose embedding
  changes most sits within one hop of each burst, and the mean offset is under a quarter hop (timestamps that mark
  frame starts instead of centres fail this);
- ``long-audio``: ``long_seconds`` (20 min) of audio embeds with peak memory within a budget, timestamps on the same
  grid to the end (no drift), and bursts in the last minute are still found at their times (no dropped frames);
- ``batch-invariance``: a clip alone equals the clip inside a batch of equal-length clips (a loud one and a
  zero-padded quiet one), for both APIs;
- ``determinism``: the same call twice gives bit-identical outputs;
- ``padding`` (information only): how much zero-padding a clip changes its first timestamp embeddings.
"""

from __future__ import annotations

import importlib
import itertools
import math
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hear_atst.registry import MODELS
from tasks.hear_format import HEAR_SAMPLE_RATES

TIMESTAMP_LENGTHS_S = (1.07, 1.98, 4.0)  # hear-validator's clip lengths
SCENE_LENGTH_S = 2.74
MAX_SPACING_ERROR_MS = 1.0
LONG_SECONDS = 1200.0  # HEAR: up to 20 minutes of audio
MIN_LONG_SECONDS = 60.0  # four bursts, 12 s apart, in the last minute
HEAR_MEMORY_LIMIT = 16 * 2**30  # HEAR: 20 minutes within 16 GB
FIXED_MEMORY_ALLOWANCE = 2**30  # weights-independent working memory on top of audio and outputs
NOISE_LEVEL = 0.01
BURST_MS = 4.0
BURST_HZ = 2000.0
BURST_AMPLITUDE = 0.8
BURST_SPACING_MS = 12000.0  # one burst per 12 s: more than any model's context window (ATST <= 10 s)
SEED = 0
FP32_TOLERANCE = 1e-4  # batch invariance, relative to the largest embedding value
BF16_TOLERANCE = 2e-2


@dataclass(frozen=True)
class CheckResult:
    """One check: ``status`` is "pass", "fail", "warn" (HEAR suggestion not met) or "info" (never fails)."""

    name: str
    status: str
    detail: str

    @property
    def passed(self) -> bool:
        return self.status != "fail"


class _Report:
    def __init__(self) -> None:
        self.results: list[CheckResult] = []

    def add(self, name: str, ok: bool, detail: str, failure: str = "fail") -> bool:
        self.results.append(CheckResult(name, "pass" if ok else failure, detail))
        return ok

    def info(self, name: str, detail: str) -> None:
        self.results.append(CheckResult(name, "info", detail))


def resolve_module_name(name: str) -> str:
    """A registered model name (``atst_frame``) or a module path (``hear_atst.atst_frame``) -> module path."""
    return MODELS[name].module if name in MODELS else name


def validate_module(
    module_name: str,
    model_file_path: str | Path | None = None,
    *,
    long_seconds: float = LONG_SECONDS,
    memory_limit: int = HEAR_MEMORY_LIMIT,
    **options: Any,
) -> list[CheckResult]:
    """Run every check on HEAR module ``module_name`` loaded with ``load_model(model_file_path, **options)``.

    Returns the results in order; a failed prerequisite (import, API, loading) ends the run early.
    """
    if long_seconds < MIN_LONG_SECONDS:
        raise ValueError(f"long_seconds={long_seconds:g}: the long-audio check needs at least {MIN_LONG_SECONDS:g} s")
    report = _Report()
    module_name = resolve_module_name(module_name)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import failure is the module's fault, reported as such
        report.add("import", False, f"import {module_name} failed: {type(error).__name__}: {error}")
        return report.results
    missing = [f for f in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings")
               if not callable(getattr(module, f, None))]
    if not report.add("api", not missing, f"missing: {', '.join(missing)}" if missing else "load_model, "
                      "get_scene_embeddings, get_timestamp_embeddings"):
        return report.results
    try:
        model = module.load_model(str(model_file_path), **options) if model_file_path else module.load_model(**options)
    except Exception as error:
        report.add("load_model", False, f"{type(error).__name__}: {error}")
        return report.results
    return _check_model(report, module, model, long_seconds, memory_limit, options.get("precision", "fp32"))


def validate_loaded(load: Callable[[], tuple[Any, nn.Module]], *, long_seconds: float = LONG_SECONDS,
                    memory_limit: int = HEAR_MEMORY_LIMIT, precision: str = "fp32") -> list[CheckResult]:
    """Run every check from ``model-type`` on, on what ``load()`` returns: an object with the two HEAR embedding
    functions (a HEAR module, or :class:`hear_atst.model_calls.CheckedApi` for a model from elsewhere) and the model.
    A failing ``load()`` is the ``load_model`` check's failure."""
    report = _Report()
    try:
        api, model = load()
    except Exception as error:  # the model's own exception, or a broken contract, reported as the check's
        report.add("load_model", False, str(error) if isinstance(error, ValueError) else
                   f"{type(error).__name__}: {error}")
        return report.results
    return _check_model(report, api, model, long_seconds, memory_limit, precision)


def _check_model(report: _Report, module: Any, model: nn.Module, long_seconds: float, memory_limit: int,
                 precision: str) -> list[CheckResult]:
    if not _check_attributes(report, model):
        return report.results
    probe = _Probe(module, model)
    if not _guarded(report, "shapes", _check_shapes, report, probe):
        return report.results
    if _guarded(report, "timestamps", _check_timestamps, report, probe):
        _guarded(report, "centring", _check_centring, report, probe)
        _guarded(report, "long-audio", _check_long_audio, report, probe, long_seconds, memory_limit)
    else:
        report.add("centring", False, "skipped: needs timestamps on a regular grid of at least two")
    _guarded(report, "batch-invariance", _check_batch_invariance, report, probe, precision)
    _guarded(report, "determinism", _check_determinism, report, probe)
    _guarded(report, "padding", _padding_information, report, probe)
    return report.results


def _guarded(report: _Report, name: str, check: Callable[..., Any], *args: Any) -> bool:
    """Run one check; an exception from the module under test (or a malformed output) is that check's failure,
    never the validator's crash. True when the check ran and did not return False."""
    try:
        return check(*args) is not False
    except Exception as error:  # anything the module raises is reported against the check that triggered it
        report.add(name, False, f"{type(error).__name__}: {error}")
        return False


class _Probe:
    """Calls into the module under test, on signals made for the checks."""

    def __init__(self, module: Any, model: nn.Module) -> None:
        self.module = module
        self.model = model
        self.sample_rate = int(model.sample_rate)
        self.hop_ms = math.nan
        self.first_ms = math.nan
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        self.device = first.device if first is not None else torch.device("cpu")

    def timestamp(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``(embeddings, timestamps)`` on the CPU, for audio sent to the model's device."""
        out = self.module.get_timestamp_embeddings(audio.to(self.device), self.model)
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
            raise TypeError(f"get_timestamp_embeddings returned {type(out).__name__}, expected a (Tensor, Tensor) "
                            "tuple")
        return out[0].cpu(), out[1].cpu()

    def scene(self, audio: Tensor) -> Tensor:
        out = self.module.get_scene_embeddings(audio.to(self.device), self.model)
        if not isinstance(out, Tensor):
            raise TypeError(f"get_scene_embeddings returned {type(out).__name__}, expected a Tensor")
        return out.cpu()

    def noise(self, n_sounds: int, seconds: float, level: float = 1.0, seed: int = SEED) -> Tensor:
        """Uniform noise in ``[-level, level)`` (as hear-validator, which uses level 1)."""
        generator = torch.Generator().manual_seed(seed)
        samples = int(seconds * self.sample_rate)
        return (torch.rand(n_sounds, samples, generator=generator) * 2 - 1) * level

    def add_bursts(self, audio: Tensor, times_ms: list[float]) -> Tensor:
        """``audio`` plus a Hann-windowed tone burst centred at each time (``BURST_MS`` long)."""
        length = int(BURST_MS * self.sample_rate / 1000)
        t = torch.arange(length, dtype=torch.float64) / self.sample_rate
        burst = (torch.hann_window(length, periodic=False, dtype=torch.float64)
                 * torch.sin(2 * math.pi * BURST_HZ * t) * BURST_AMPLITUDE).float()
        out = audio.clone()
        for time_ms in times_ms:
            start = round(time_ms * self.sample_rate / 1000) - length // 2
            out[..., start : start + length] += burst
        return out.clamp(-1, 1)

    def locate_bursts(self, quiet: Tensor, times_ms: list[float], base: Tensor | None = None) -> list[float]:
        """For each burst time, the reported timestamp of the token that changes most, minus the burst time.

        ``quiet`` ``[1, N]`` is the background (``base``: its timestamp embeddings, if already computed). Bursts
        must be further apart than the model's context, or every token sees every burst.
        """
        if base is None:
            base = self.timestamp(quiet)[0]
        loud, stamps = self.timestamp(self.add_bursts(quiet, times_ms))
        change = (loud[0] - base[0]).double().norm(dim=-1)
        stamps = stamps[0].double()
        errors = []
        for time_ms in times_ms:
            index = torch.nonzero((stamps - time_ms).abs() <= 4 * self.hop_ms).flatten()
            if not len(index):  # no timestamp anywhere near the burst (e.g. timestamps not in ms)
                errors.append(math.inf)
                continue
            best = index[change[index].argmax()]
            errors.append(float(stamps[best]) - time_ms)
        return errors


def _check_attributes(report: _Report, model: Any) -> bool:
    ok = report.add("model-type", isinstance(model, nn.Module), f"load_model returned {type(model).__name__}")
    sample_rate = getattr(model, "sample_rate", None)
    ok &= report.add("sample-rate", sample_rate in HEAR_SAMPLE_RATES,
                     f"sample_rate={sample_rate!r} (HEAR: one of {HEAR_SAMPLE_RATES})")
    for name in ("scene_embedding_size", "timestamp_embedding_size"):
        value = getattr(model, name, None)
        good = isinstance(value, int) and not isinstance(value, bool) and value > 0
        ok &= report.add(name, good, f"{name}={value!r} (a positive int)")
    if isinstance(model, nn.Module):
        training = [name or "<model>" for name, sub in model.named_modules() if sub.training]
        report.add("eval-mode", not training, f"in training mode: {', '.join(training[:5])}" if training
                   else "every module in eval mode")
    return ok


def _check_shapes(report: _Report, probe: _Probe) -> bool:
    model, problems = probe.model, []
    for seconds in TIMESTAMP_LENGTHS_S:
        embeddings, stamps = probe.timestamp(probe.noise(2, seconds))
        expected = (2, stamps.shape[-1] if stamps.ndim == 2 else -1, model.timestamp_embedding_size)
        if embeddings.dtype != torch.float32 or stamps.dtype != torch.float32:
            problems.append(f"{seconds} s: dtypes {embeddings.dtype}/{stamps.dtype}, expected float32/float32")
        if stamps.ndim != 2 or tuple(embeddings.shape) != expected or stamps.shape[0] != 2:
            problems.append(f"{seconds} s: embeddings {tuple(embeddings.shape)}, timestamps {tuple(stamps.shape)}")
        elif stamps.shape[1] == 0:
            problems.append(f"{seconds} s: no timestamps")
        if not bool(torch.isfinite(embeddings).all()):
            problems.append(f"{seconds} s: non-finite timestamp embeddings")
    scene = probe.scene(probe.noise(4, SCENE_LENGTH_S))
    if scene.dtype != torch.float32 or tuple(scene.shape) != (4, model.scene_embedding_size):
        problems.append(f"scene: {scene.dtype} {tuple(scene.shape)}, expected float32 (4, "
                        f"{model.scene_embedding_size})")
    if not bool(torch.isfinite(scene).all()):
        problems.append("scene: non-finite values")
    return report.add("shapes", not problems, "; ".join(problems) or
                      f"timestamp [2, T, {model.timestamp_embedding_size}] for {TIMESTAMP_LENGTHS_S} s, scene "
                      f"[4, {model.scene_embedding_size}], float32, finite")


def _grid_problems(stamps: Tensor, duration_ms: float, hop_ms: float, first_ms: float) -> list[str]:
    """How timestamps ``[n_sounds, T]`` deviate from ``first_ms + i * hop_ms`` covering ``duration_ms``."""
    stamps = stamps.double()
    problems = []
    if not bool((stamps == stamps[:1]).all()):
        problems.append("sounds of one batch have different timestamps")
    expected = first_ms + hop_ms * torch.arange(stamps.shape[1], dtype=torch.float64)
    off = float((stamps[0] - expected).abs().max())
    if off >= MAX_SPACING_ERROR_MS:
        problems.append(f"{off:.3f} ms off the grid {first_ms:g} + i*{hop_ms:g} ms")
    last = float(stamps[0, -1])
    if last > duration_ms:
        problems.append(f"last timestamp {last:.2f} ms is after the end of the audio ({duration_ms:.2f} ms)")
    if duration_ms - last >= hop_ms + first_ms:
        problems.append(f"last timestamp {last:.2f} ms leaves {duration_ms - last:.2f} ms uncovered "
                        f"(>= hop + first = {hop_ms + first_ms:g} ms)")
    return problems


def _check_timestamps(report: _Report, probe: _Probe) -> bool:
    """The spacing and grid checks; False when there is no regular hop for the checks that need one."""
    stamps_by_length = {s: probe.timestamp(probe.noise(2, s))[1] for s in TIMESTAMP_LENGTHS_S}
    longest = stamps_by_length[TIMESTAMP_LENGTHS_S[-1]][0].double()
    if len(longest) < 2:
        report.add("spacing", False, f"a {TIMESTAMP_LENGTHS_S[-1]} s clip got {len(longest)} timestamp(s): no hop")
        return False
    steps = longest.diff()
    hop = float(steps.mean())
    spacing = float((steps - hop).abs().max())
    report.add("spacing", spacing < MAX_SPACING_ERROR_MS,
               f"hop {hop:.4f} ms, largest deviation {spacing:.2e} ms (< {MAX_SPACING_ERROR_MS} ms)")
    report.add("hop<=50ms", hop <= 50.0, f"hop {hop:.2f} ms (HEAR suggests <= 50 ms)", failure="warn")
    first = float(longest[0])
    probe.hop_ms, probe.first_ms = hop, first
    report.add("first-centre", 0.0 <= first < hop, f"first timestamp {first:.3f} ms (within the first hop, "
               f"0 <= t0 < {hop:.2f})")
    problems = []
    for seconds, stamps in stamps_by_length.items():
        problems += [f"{seconds} s: {p}" for p in _grid_problems(stamps, 1000 * seconds, hop, first)]
    report.add("grid", not problems, "; ".join(problems) or f"every length on {first:g} + i*{hop:.4g} ms, the last "
               "timestamp inside the audio and the end covered")
    return hop > 0


def _check_centring(report: _Report, probe: _Probe, n_bursts: int = 8) -> None:
    hop = probe.hop_ms
    times = [BURST_SPACING_MS * (k + 0.25) + hop * k / n_bursts for k in range(n_bursts)]
    quiet = probe.noise(1, (times[-1] + BURST_SPACING_MS) / 1000, level=NOISE_LEVEL)
    errors = probe.locate_bursts(quiet, times)
    bias = sum(errors) / len(errors)
    worst = max(abs(e) for e in errors)
    report.add("centring", abs(bias) < hop / 4 and worst <= hop,
               f"{n_bursts} bursts at sub-hop offsets found {', '.join(f'{e:+.1f}' for e in errors)} ms from their "
               f"times: mean {bias:+.2f} ms (< hop/4 = {hop / 4:.2f}), each within one hop")


def _peak_memory_reset() -> int:
    """Reset the process's peak resident set (Linux) and return the current resident set in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError as error:
        raise RuntimeError(f"cannot reset the peak memory counter (/proc/self/clear_refs): {error}") from None
    return _proc_status_bytes("VmRSS")


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _check_long_audio(report: _Report, probe: _Probe, seconds: float, memory_limit: int) -> None:
    hop, first = probe.hop_ms, probe.first_ms
    quiet = probe.noise(1, seconds, level=NOISE_LEVEL)
    before = _peak_memory_reset() if sys.platform.startswith("linux") else None
    embeddings, stamps = probe.timestamp(quiet)
    output_bytes = embeddings.element_size() * embeddings.numel() + stamps.element_size() * stamps.numel()
    if before is None:
        report.add("long-audio-memory", False, f"not checked: peak memory can only be measured on Linux "
                   f"(ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} kB)", failure="warn")
    else:
        extra = _proc_status_bytes("VmHWM") - before
        budget = min(memory_limit, 3 * (quiet.numel() * 4 + output_bytes) + FIXED_MEMORY_ALLOWANCE)
        report.add("long-audio-memory", extra <= budget,
                   f"{seconds:g} s: peak memory +{extra / 2**20:.0f} MiB (budget {budget / 2**20:.0f} MiB = 3 x "
                   f"(audio + outputs {output_bytes / 2**20:.0f} MiB) + 1 GiB, at most {memory_limit / 2**30:g} GiB)")
    problems = _grid_problems(stamps, 1000 * seconds, hop, first)
    report.add("long-audio-grid", not problems, "; ".join(problems) or
               f"{stamps.shape[1]} timestamps on {first:g} + i*{hop:.4g} ms to {float(stamps[0, -1]):.1f} ms")
    end_ms = 1000 * seconds
    times = [end_ms - BURST_SPACING_MS * (4 - k) + 7.3 * k for k in range(4)]  # the last minute
    errors = probe.locate_bursts(quiet, times, base=embeddings)
    worst = max(abs(e) for e in errors)
    report.add("long-audio-drift", worst <= hop, f"bursts near the end found "
               f"{', '.join(f'{e:+.1f}' for e in errors)} ms from their times (each within one hop {hop:.2f} ms)")


def _compare(name: str, alone: Tensor, in_batch: Tensor, tolerance: float) -> tuple[bool, str]:
    if alone.shape != in_batch.shape:
        return False, f"{name}: shapes {tuple(alone.shape)} vs {tuple(in_batch.shape)}"
    scale = float(alone.abs().max()) or 1.0
    diff = float((alone - in_batch).abs().max())
    return diff <= tolerance * scale, f"{name}: max diff {diff:.2e} ({diff / scale:.1e} relative, <= {tolerance:g})"


def _check_batch_invariance(report: _Report, probe: _Probe, precision: str) -> None:
    tolerance = BF16_TOLERANCE if precision == "bf16" else FP32_TOLERANCE
    n = int(3.0 * probe.sample_rate)
    clip = probe.add_bursts(probe.noise(1, 3.0, level=0.1, seed=SEED + 1), [700.0, 2500.0])
    clip[:, n // 3 : n // 2] = 0.0  # digital silence: its level depends on the clip's own loudest frame
    t = torch.arange(n, dtype=torch.float64) / probe.sample_rate
    loud = (torch.sin(2 * math.pi * 1000.0 * t).float() * 0.9 + probe.noise(1, 3.0, level=0.1, seed=SEED + 2)[0])
    padded = torch.zeros_like(clip)
    padded[:, : n // 3] = probe.noise(1, 1.0, level=NOISE_LEVEL, seed=SEED + 3)[:, : n // 3]
    batch = torch.cat([loud.unsqueeze(0), clip, padded])
    details, ok = [], True
    for name, call in (("timestamp", lambda a: probe.timestamp(a)[0]), ("scene", probe.scene)):
        together = call(batch)
        for index, label in ((1, "clip"), (2, "zero-padded clip")):
            good, detail = _compare(f"{name} {label}", call(batch[index : index + 1])[0], together[index], tolerance)
            ok &= good
            details.append(detail)
    report.add("batch-invariance", ok, "alone vs in a batch with a loud clip: " + "; ".join(details))


def _check_determinism(report: _Report, probe: _Probe) -> None:
    audio = probe.noise(2, 2.0, level=0.5, seed=SEED + 4)
    calls: list[tuple[str, Callable[[Tensor], Tensor]]] = [
        ("timestamp", lambda a: probe.timestamp(a)[0]), ("scene", probe.scene)]
    same = [name for name, call in calls if torch.equal(call(audio), call(audio))]
    report.add("determinism", len(same) == len(calls), f"bit-identical on a repeated call: {', '.join(same) or 'none'}")


def _padding_information(report: _Report, probe: _Probe) -> None:
    clip = probe.noise(1, 2.0, level=0.3, seed=SEED + 5)
    alone = probe.timestamp(clip)[0][0]
    padded = probe.timestamp(torch.nn.functional.pad(clip, (0, clip.shape[1])))[0][0, : alone.shape[0]]
    diff = float((alone - padded).abs().max()) / (float(alone.abs().max()) or 1.0)
    report.info("padding", f"zero-padding a 2 s clip to 4 s changes its first {alone.shape[0]} timestamp embeddings "
                f"by up to {diff:.1e} (relative); models that attend over the whole window see the padding")
