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
    ("Peak memory of a build vs video length", "bench_memory"),
    ("Eval metrics throughput", "bench_eval"),
]


def _section(title: str, result: dict) -> str:
    lines = [f"## {title}", ""]
    if "markdown" in result:
        lines.append(result["markdown"])
    else:
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in result.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    ap.add_argument("--only", nargs="*", help="module names to run")
    args = ap.parse_args()
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
            result = importlib.import_module(module).run(quick=args.quick)
        except Exception:
            failed += 1
            traceback.print_exc()
            result = {"error": "benchmark failed; see the console output"}
        print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2, default=str))
        sections.append(_section(title, result))
    sections.append("## GPU\n\nReal-size model timings need a GPU machine; none is measured in this file.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(head + sections))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
