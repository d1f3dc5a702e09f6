"""Prepare the full versions of every registered task from ../shared/data and record the wall-clock time.

Lays the real data out like the official downloads with ../shared/tools (ESC-10 in the ESC-50 layout at 44.1 kHz,
LibriSpeech in the VoxCeleb1 layout, all 72 DCASE 2016 scenes at 44.1 kHz x 120 s), then runs ``prepare_task`` in
the mode that data supports (Speech Commands: the small archives, so ``small``; the others ``full``) at the
requested rates, and writes ``results/bench_prepare.json``.

    python benchmarks/bench_prepare.py [--sample-rates 16000,48000] [--shared ../shared] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.pipeline import prepare_task  # noqa: E402
from tasks.registry import get_spec  # noqa: E402


def layout(tools: Path, script: str, out: Path, *args: str) -> float:
    start = time.perf_counter()
    command = [sys.executable, str(tools / script), str(out), *args]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:  # the layout tool's own message says what is wrong (e.g. a wrong --shared)
        sys.exit(f"error: {' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("HEAR_ATST_SHARED", REPO.parent / "shared")))
    parser.add_argument("--sample-rates", default="16000")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench_prepare.json")
    args = parser.parse_args()
    rates = tuple(int(r) for r in args.sample_rates.split(","))
    data, tools = args.shared / "data", args.shared / "tools"

    records = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        layouts = {
            "esc50": layout(tools, "make_esc50_layout.py", work / "esc50"),
            "voxceleb1": layout(tools, "make_voxceleb1_layout.py", work / "vox"),
            "dcase2016_task2": layout(tools, "make_dcase2016_layout.py", work / "dcase", "--scenes", "all"),
        }
        jobs = [
            ("esc50", work / "esc50", "full"),
            ("speech_commands", data / "speech_commands_small", "small"),
            ("voxceleb1", work / "vox", "full"),
            ("dcase2016_task2", work / "dcase", "full"),
            ("spoken_digit", data / "fsdd", "full"),
        ]
        for name, source, mode in jobs:
            start = time.perf_counter()
            folder = prepare_task(get_spec(name), work / "tasks", source=source, sample_rates=rates, mode=mode)
            seconds = time.perf_counter() - start
            meta = json.loads((folder / "task_metadata.json").read_text())
            clips = {split: len(json.loads((folder / f"{split}.json").read_text())) for split in meta["splits"]}
            audio_s = sum(clips.values()) * meta["sample_duration"]
            records.append({
                "task": name, "folder": folder.name, "mode": mode, "clips": clips, "audio_seconds": round(audio_s, 2),
                "layout_seconds": round(layouts.get(name, 0.0), 2), "prepare_seconds": round(seconds, 2),
                "audio_seconds_per_second": round(audio_s * len(rates) / seconds, 1),
            })
            print(json.dumps(records[-1]))
            start = time.perf_counter()
            prepare_task(get_spec(name), work / "tasks", source=source, sample_rates=rates, mode=mode)
            records[-1]["rerun_seconds"] = round(time.perf_counter() - start, 3)

    result = {
        "benchmark": "bench_prepare",
        "sample_rates": list(rates),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "tasks": records,
        "total_prepare_seconds": round(sum(r["prepare_seconds"] for r in records), 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
