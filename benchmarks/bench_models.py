"""Speed of every registered model, end to end (audio -> front-end -> encoder -> embeddings), fp32 and bf16.

For each model and precision it reports:
- seconds of audio embedded per second of wall time (``get_scene_embeddings`` and ``get_timestamp_embeddings``
  on a batch of equal-length clips, best of ``--repeats`` timed calls after one warm-up call; best-of because
  other processes on the machine can only slow a call down);
- the model's FLOPs per call and the achieved FLOP/s (FLOPs / end-to-end time) as a fraction of the machine's
  peak GEMM FLOP/s in the same precision, measured in the same run (square ``torch.mm``, best over sizes,
  measured before and after the models so that load from other processes shows up as a spread);
- for bf16, the relative error of the embeddings against fp32 (``||e_bf16 - e_fp32|| / ||e_fp32||``).

FLOPs are counted from the shapes of every matrix product the call runs (``torch.utils.flop_counter`` plus the CPU
attention kernel, 4·B·H·L·S·E; on CUDA the flop counter itself counts the flash, memory-efficient and cuDNN attention
kernels with the same formula, and the math fallback as its batched products), i.e. 2·M·N·K per GEMM; element-wise
work, softmax, norms and the STFT are not counted. For an ATST window of ``n`` patches (``N = n + n_cls`` tokens,
width ``D``, ``L`` blocks run) this is the analytic ``L·(24·N·D² + 4·N²·D) + 2·256·D·n`` (qkv 6ND², proj 2ND², MLP
16ND², QKᵀ and AV 4N²D, patch embedding); :func:`atst_window_flops` states it and the tests check the counter
against it.

Models that need weights run with ``random_weights=True, size="base"`` (FLOP/s do not depend on the values).
``--device cuda`` puts the audio, the models and the peak GEMM on the GPU and synchronises it before every clock
reading; fp32 matrix products run in full fp32 there (torch's default: no TF32 for matmuls; cuDNN convolutions such as
ASiT's patch embedding may use TF32, torch's default for them).
Usage: ``python benchmarks/bench_models.py [--models atst_frame mel] [--batch 8] [--seconds 10]
[--threads 2] [--device cpu] [--out results/bench_models]`` -> ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from evaluation.environment import cpu_model
from hear_atst.atomic import write_text_atomic
from hear_atst.registry import MODELS, ModelSpec

PRECISIONS = ("fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GEMM_SIZES = (1024, 2048, 3072)
CUDA_GEMM_SIZES = (4096, 8192, 16384)  # a GPU needs larger products to reach its peak
SEED = 0


def atst_window_flops(n_patches: int, n_cls: int, dim: int, blocks_run: int) -> int:
    """Analytic GEMM FLOPs of one ATST window: ``L·(24·N·D² + 4·N²·D) + 2·256·D·n`` with ``N = n + n_cls``."""
    tokens = n_patches + n_cls
    return blocks_run * (24 * tokens * dim**2 + 4 * tokens**2 * dim) + 2 * 256 * dim * n_patches


def _sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``QKᵀ`` and ``AV``: 2·B·H·L·S·E + 2·B·H·L·S·Ev."""
    *batch, length, head = query
    source, head_v = key[-2], value[-1]
    return 2 * math.prod(batch) * length * source * (head + head_v)


def count_flops(call: Callable[[], Any]) -> int:
    """GEMM FLOPs that ``call`` runs (matrix products and attention: the CPU kernel here, CUDA's in torch's table)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        call()
    return int(counter.get_total_flops())


def require_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Exit with a usage error when ``--device cuda`` is asked of a torch that sees no CUDA device."""
    if device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: no CUDA device is available to this torch ({torch.__version__})")


def device_name(device: str) -> str:
    """The GPU's name on ``cuda``, else the CPU's model."""
    return torch.cuda.get_device_name() if device == "cuda" else cpu_model()


def clock(device: str) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` has finished (CUDA kernels run asynchronously)."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def peak_gemm_flops(dtype: torch.dtype, device: str = "cpu", repeats: int = 5) -> float:
    """Best FLOP/s of a square ``torch.mm`` on ``device`` over :data:`GEMM_SIZES` (:data:`CUDA_GEMM_SIZES` on
    ``cuda``)."""
    best = 0.0
    for size in CUDA_GEMM_SIZES if device == "cuda" else GEMM_SIZES:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        torch.mm(a, b)
        for _ in range(repeats):
            start = clock(device)
            torch.mm(a, b)
            best = max(best, 2 * size**3 / (clock(device) - start))
    return best


def benchmark_audio(batch: int, seconds: float, sample_rate: int) -> torch.Tensor:
    """Deterministic test clips: a chirp, an amplitude-modulated tone and noise, different per clip."""
    generator = torch.Generator().manual_seed(SEED)
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    clips = []
    for index in range(batch):
        f0 = 200.0 + 150.0 * index
        chirp = torch.sin(2 * math.pi * f0 * seconds / 3 * (torch.exp(3 * t / seconds) - 1))
        tone = torch.sin(2 * math.pi * (440.0 + 37 * index) * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))
        noise = torch.randn(t.shape, generator=generator, dtype=torch.float64)
        clips.append(0.3 * chirp + 0.2 * tone + 0.05 * noise)
    return torch.stack(clips).float().clamp(-1, 1)


def load(spec: ModelSpec, precision: str, device: str) -> Any:
    """The model on ``device`` with random weights where it needs weights, at size "base" where the module has a
    ``size`` option (ASiT's random model is always ViT-B)."""
    load_model = spec.import_module().load_model
    options: dict[str, Any] = {"precision": precision}
    if spec.needs_weights:
        options["random_weights"] = True
        if "size" in inspect.signature(load_model).parameters:
            options["size"] = "base"
    return load_model(**options).to(device)


def best_time(call: Callable[[], Any], repeats: int, device: str) -> float:
    """Best wall time of ``repeats`` calls (the caller has warmed up)."""
    times = []
    for _ in range(repeats):
        start = clock(device)
        call()
        times.append(clock(device) - start)
    return min(times)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference.double()).norm() / reference.double().norm())


def bench_model(spec: ModelSpec, batch: int, seconds: float, repeats: int, device: str) -> dict[str, Any]:
    """Timings, FLOPs and bf16 error of one model (``fraction_of_peak`` is filled in by :func:`add_fractions`)."""
    module = spec.import_module()
    result: dict[str, Any] = {"module": spec.module}
    calls = {"scene": module.get_scene_embeddings, "timestamp": lambda a, m: module.get_timestamp_embeddings(a, m)[0]}
    reference: dict[str, torch.Tensor] = {}
    flops: dict[str, int] = {}
    for precision in PRECISIONS:
        model = load(spec, precision, device)
        audio = benchmark_audio(batch, seconds, model.sample_rate).to(device)
        outputs = {api: call(audio, model) for api, call in calls.items()}  # also the warm-up calls
        if precision == "fp32":  # the same matrix products run in bf16
            flops = {api: count_flops(lambda c=call, m=model, a=audio: c(a, m)) for api, call in calls.items()}
        entry: dict[str, Any] = {}
        for api, call in calls.items():
            seconds_per_call = best_time(lambda c=call, m=model, a=audio: c(a, m), repeats, device)
            entry[api] = {
                "seconds_per_call": seconds_per_call,
                "audio_seconds_per_second": batch * seconds / seconds_per_call,
                "gflop_per_call": flops[api] / 1e9,
                "achieved_gflops": flops[api] / seconds_per_call / 1e9,
            }
        if precision == "fp32":
            reference = outputs
        else:
            entry["relative_error_vs_fp32"] = {api: relative_error(outputs[api], reference[api]) for api in calls}
        result[precision] = entry
        del model
    for api in ("scene", "timestamp"):
        result[f"bf16_speedup_{api}"] = (
            result["fp32"][api]["seconds_per_call"] / result["bf16"][api]["seconds_per_call"]
        )
    return result


def add_fractions(models: dict[str, Any], peaks: dict[str, float]) -> None:
    """Achieved FLOP/s as a fraction of the best peak GEMM FLOP/s seen in the run (None: no GEMM work)."""
    for result in models.values():
        if "error" in result:
            continue
        for precision in PRECISIONS:
            for api in ("scene", "timestamp"):
                row = result[precision][api]
                achieved = row["achieved_gflops"] * 1e9
                row["fraction_of_peak"] = achieved / peaks[precision] if row["gflop_per_call"] else None


def machine_line(machine: dict[str, Any]) -> str:
    """The processor, or on CUDA the GPU and its host processor."""
    if machine["device"] == "cuda":
        return f"{machine['device_name']} (CUDA {machine['cuda']}), host CPU {machine['processor']}"
    return machine["processor"]


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    peaks = report["peak_gemm_gflops"]
    lines = [
        "# Model speed (end to end: audio -> front-end -> encoder -> embeddings)",
        "",
        f"Machine: {machine_line(report['machine'])}, {report['machine']['threads']} threads, torch "
        f"{report['machine']['torch']}; load average at start {report['machine']['loadavg_start']}, "
        f"at end {report['machine']['loadavg_end']}. Batch {report['batch']} x {report['clip_seconds']} s clips, "
        f"best of {report['repeats']} calls after a warm-up call.",
        "",
        f"Peak GEMM (square torch.mm, same run): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
        f"(before/after: fp32 {report['peak_gemm_spread']['fp32']}, bf16 {report['peak_gemm_spread']['bf16']}).",
        "",
        "| model | precision | API | x real time | GFLOP/call | GFLOP/s | % of peak | bf16 speed-up | bf16 rel. err. |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in report["models"].items():
        if "error" in result:
            lines.append(f"| {name} | - | - | not run: {result['error']} | | | | | |")
            continue
        for precision in PRECISIONS:
            for api in ("scene", "timestamp"):
                row = result[precision][api]
                fraction = row["fraction_of_peak"]
                speedup = f"{result[f'bf16_speedup_{api}']:.2f}" if precision == "bf16" else ""
                error = (f"{result['bf16']['relative_error_vs_fp32'][api]:.2e}" if precision == "bf16" else "")
                lines.append(
                    f"| {name} | {precision} | {api} | {row['audio_seconds_per_second']:.1f} | "
                    f"{row['gflop_per_call']:.1f} | {row['achieved_gflops']:.1f} | "
                    f"{'' if fraction is None else f'{100 * fraction:.0f} %'} | {speedup} | {error} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                        help=f"registered model names (default: all of {', '.join(MODELS)})")
    parser.add_argument("--batch", type=int, default=8, help="clips a call (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip (default 10)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls, the best kept (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the models and GEMMs run")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "bench_models",
                        help="file stem: <out>.json and <out>.md (default: results/bench_models)")
    args = parser.parse_args(argv)
    require_device(parser, args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    loadavg_start = os.getloadavg()
    first = {precision: peak_gemm_flops(DTYPES[precision], args.device) for precision in PRECISIONS}
    models: dict[str, Any] = {}
    for name in args.models:
        spec = MODELS[name]
        try:
            models[name] = bench_model(spec, args.batch, args.seconds, args.repeats, args.device)
        except Exception as error:  # recorded in the report; the other models still run
            models[name] = {"error": f"{type(error).__name__}: {error}"}
            print(f"{name}: not run ({models[name]['error']})", flush=True)
            continue
        print(f"{name}: fp32 {models[name]['fp32']['timestamp']['audio_seconds_per_second']:.1f}x, "
              f"bf16 {models[name]['bf16']['timestamp']['audio_seconds_per_second']:.1f}x real time", flush=True)
    last = {precision: peak_gemm_flops(DTYPES[precision], args.device) for precision in PRECISIONS}
    peaks = {precision: max(first[precision], last[precision]) for precision in PRECISIONS}
    add_fractions(models, peaks)
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "processor": cpu_model(),
            "device": args.device,
            "device_name": device_name(args.device),
            "cuda": torch.version.cuda if args.device == "cuda" else None,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "loadavg_start": [round(x, 2) for x in loadavg_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "repeats": args.repeats,
        "peak_gemm_gflops": {precision: peaks[precision] / 1e9 for precision in PRECISIONS},
        "peak_gemm_spread": {p: [round(first[p] / 1e9), round(last[p] / 1e9)] for p in PRECISIONS},
        "models": models,
    }
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), markdown(report))
    return report


if __name__ == "__main__":
    main()
