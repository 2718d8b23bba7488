"""`make bench`: run every benchmark side by side and write docs/BENCHMARKS.md.

Each figure is a ratio measured in one run on this machine; absolute numbers are for context.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import platform
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

BENCHES = [
    ("Shot detection throughput", "bench_shots"),
    ("Sparse frame sampling: seek vs stream", "bench_sampling"),
    ("Decode work of a whole build", "bench_build_decode"),
    ("Peak memory of a build vs video length", "bench_memory"),
    ("Eval metrics throughput", "bench_eval"),
    ("R@k and bootstrap intervals at MAD's size", "bench_recall"),
    ("GRPO training step (CPU, tiny model)", "bench_train"),
    ("Captions batched across videos (CPU, tiny model)", "bench_caption_batches"),
    ("CLIP filter batched across videos (CPU, tiny CLIP)", "bench_clip_batches"),
    ("Grounding batches: longest video first vs annotation order (CPU, tiny model)", "bench_ground_batches"),
    ("One grounding generate call: decode steps and our per-step work (CPU, tiny model)", "bench_decode_steps"),
    ("A GRPO rollout decode step vs a grounding decode step (CPU, tiny model)", "bench_rollout_steps"),
    ("Vision windows: one attention call per window length (CPU, 7B vision geometry)", "bench_vision_windows"),
    ("Toy grounding: GRPO variants from one SFT start", "toy_grounding"),
]
GPU_RESULTS = ROOT / "benchmarks" / "gpu_results"


def _gpu_section() -> str:
    """Results of the GPU scripts, saved as JSON in benchmarks/gpu_results/ with their command
    (a GPU is lent only sometimes: these are not re-measured by `make bench`)."""
    lines = ["## GPU", ""]
    files = sorted(GPU_RESULTS.glob("*.json")) if GPU_RESULTS.is_dir() else []
    if not files:
        return "\n".join(lines + ["Real-size model timings need a GPU machine; none is recorded.", ""])
    for f in files:
        doc = json.loads(f.read_text())
        lines += [f"### {doc['title']}", ""]
        for run in doc["runs"]:
            lines += [f"{run['device']}, {run['date']}, torch {run['torch']}: `{run['command']}`", "",
                      "| figure | value |", "| --- | --- |"]
            lines += [f"| {k} | {v} |" for k, v in run.items()
                      if k not in ("device", "date", "torch", "command")]
            lines.append("")
        if doc.get("notes"):
            lines += [doc["notes"], ""]
    return "\n".join(lines)


def _section(title: str, result: dict) -> str:
    lines = [f"## {title}", ""]
    if "markdown" in result:
        lines.append(result["markdown"])
    else:
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in result.items()]
    return "\n".join(lines) + "\n"


def _merge(existing: str, sections: list[str]) -> str:
    """`existing` with its ``## Title`` sections replaced by (or, when new, inserted before the
    GPU section as) the freshly written ones."""
    parts = existing.split("\n## ")
    head, olds = parts[0], ["## " + p for p in parts[1:]]
    titles = [p.splitlines()[0] for p in olds]
    for sec in sections:
        title = sec.splitlines()[0]
        if title in titles:
            olds[titles.index(title)] = sec
        else:
            at = titles.index("## GPU") if "## GPU" in titles else len(olds)
            olds.insert(at, sec)
            titles.insert(at, title)
    return "\n".join([head, *(o.rstrip("\n") + "\n" for o in olds)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    ap.add_argument("--only", nargs="*", help="module names to run; the other sections of --out are kept")
    ap.add_argument(
        "--results", nargs="*", default=[], metavar="MODULE=JSON",
        help="use a benchmark's saved figures (its script's --out) instead of running it again",
    )
    args = ap.parse_args()
    saved = {m: Path(f) for m, f in (r.split("=", 1) for r in args.results)}
    import psutil

    head = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python benchmarks/run_all.py{' --quick' if args.quick else ''}`) "
        f"on {dt.date.today().isoformat()}: {platform.processor() or platform.machine()}, "
        f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU "
        "unless stated. Each ratio is measured side by side in one run. One benchmark: "
        "`.venv/bin/python benchmarks/run_all.py --only bench_shots`.",
        "",
    ]
    sections, failed = [], 0
    for title, module in BENCHES:
        if args.only and module not in args.only:
            continue
        print(f"== {title}", flush=True)
        try:
            if module in saved:
                result = json.loads(saved[module].read_text())
            else:
                result = importlib.import_module(module).run(quick=args.quick)
        except Exception:
            failed += 1
            traceback.print_exc()
            result = {"error": "benchmark failed; see the console output"}
        print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2, default=str))
        sections.append(_section(title, result))
    gpu = _gpu_section()
    if args.only and args.out.is_file():
        text = _merge(args.out.read_text(), [*sections, gpu])
    else:
        text = "\n".join([*head, *sections, gpu])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
