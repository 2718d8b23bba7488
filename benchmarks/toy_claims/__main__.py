"""`python -m toy_claims [REGIME ...] [--quick]` from benchmarks/ (`make bench-claims`): run each
claim regime (cached: a finished one reruns in seconds), write its doc under docs/toy_grounding/
and the summary table docs/toy_grounding/claims.md, which the README's table repeats."""

from __future__ import annotations

import argparse
import importlib
import sys

from toy_claims.summary import write_summary

REGIMES = ("sparse_events", "forgetting", "ambiguous")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m toy_claims", description=__doc__)
    ap.add_argument("regimes", nargs="*", metavar="REGIME",
                    help=f"which regimes (default: all of {', '.join(REGIMES)})")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke size of each regime in about a minute (written under .cache, not docs/)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.regimes) - set(REGIMES))
    if unknown:
        ap.error(f"unknown regime {', '.join(unknown)} (choose from {', '.join(REGIMES)})")
    import torch

    torch.set_num_threads(1)  # the regimes are sized for one thread on a shared 2-core machine
    results = []
    for name in args.regimes or REGIMES:
        print(f"== {name}", flush=True)
        results.append(importlib.import_module(f"toy_claims.{name}").run(quick=args.quick))
    if not args.quick and not args.regimes:
        print(write_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
