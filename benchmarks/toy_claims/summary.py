"""The claims' summary table (docs/toy_grounding/claims.md) from each regime's `run` result."""

from __future__ import annotations

from pathlib import Path

from scenetg.atomic_files import write_bytes_atomic
from toy_claims.common import DOCS

COLUMNS = ("comparison", "metric", "a", "b", "paired", "shows")


def summary_table(results: list[dict]) -> str:
    """A markdown table: one row per `readme_rows` entry of each regime, linked to its doc."""
    lines = ["| claim | " + " | ".join(COLUMNS) + " |", "|" + " --- |" * (len(COLUMNS) + 1)]
    for res in results:
        claim = f"[{res['claim']}]({res['regime']}.md)"
        for row in res["readme_rows"]:
            lines.append(f"| {claim} | " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_summary(results: list[dict], path: Path = DOCS / "claims.md") -> Path:
    text = ("# The seed's claims on toy regimes: summary\n\n"
            "Written by `make bench-claims` (`python -m toy_claims` from benchmarks/). `a` is the "
            "reference side of each comparison and `b` the side the claim favours (for \"X vs Y\": b = X, "
            "a = Y); `paired` is what `b` gains / loses against `a` on the same held-out queries, summed "
            "over seeds, with the exact sign test; `shows`: whether the difference the claim predicts "
            "is there (yes), absent (no) or partly or against a stricter check (mixed; the regime's "
            "doc says which).\n\n"
            + summary_table(results))
    write_bytes_atomic(path, text.encode())
    return path
