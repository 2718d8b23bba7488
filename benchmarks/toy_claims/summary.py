"""The claims' summary table (docs/toy_grounding/claims.md) from each regime's `run` result."""

from __future__ import annotations

from pathlib import Path

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
            "Written by `make bench-claims` (`python -m toy_claims` from benchmarks/). `a` and `b` are the "
            "two sides of each comparison as the regime's doc names them; `paired` is held-out hits "
            "gained / lost by `b` against `a` summed over seeds, with the exact sign test.\n\n"
            + summary_table(results))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
