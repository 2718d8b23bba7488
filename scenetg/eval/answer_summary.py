"""Ground-then-Answer summaries: accuracy overall and per duration group, as JSON and Markdown."""

from __future__ import annotations

from collections.abc import Iterable

from scenetg.eval.qa_loaders import DURATION_GROUPS, QARecord


def summarize_answers(records: Iterable[QARecord], rows: dict[str, dict]) -> dict:
    """Accuracy (%) of Ground-then-Answer and of the uniform baseline, overall and per duration
    group, over the records that have a row (`rows`: qid -> row). A question whose video failed
    counts as wrong for both (`errors`); `fallback` counts questions answered from the whole
    video because the grounding was unusable; `missing` counts records with no row yet."""

    def empty() -> dict:
        return {"n": 0, "correct_gta": 0, "correct_uniform": 0, "errors": 0, "fallback": 0}

    total, groups, missing = empty(), {}, 0
    for rec in records:
        row = rows.get(str(rec.qid))
        if row is None:
            missing += 1
            continue
        for acc in (total, groups.setdefault(rec.duration_group, empty())):
            acc["n"] += 1
            acc["correct_gta"] += bool(row.get("correct_gta"))
            acc["correct_uniform"] += bool(row.get("correct_uniform"))
            acc["errors"] += bool(row.get("error"))
            acc["fallback"] += bool(row.get("fallback"))

    def finish(acc: dict) -> dict:
        n = acc["n"]
        return {
            "n": n,
            "accuracy_gta": 100.0 * acc["correct_gta"] / n if n else None,
            "accuracy_uniform": 100.0 * acc["correct_uniform"] / n if n else None,
            "errors": acc["errors"],
            "fallback": acc["fallback"],
        }

    order = [g for g in DURATION_GROUPS if g in groups] + sorted(
        g for g in groups if g not in DURATION_GROUPS
    )
    out = finish(total)
    out["missing"] = missing
    out["by_group"] = {g: finish(groups[g]) for g in order}
    return out


def format_answer_summary(summary: dict) -> str:
    """A Markdown table of the summary: one row overall, one per duration group."""
    lines = [
        "| subset | n | GtA acc | uniform acc | errors | fallback |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cell(x):
        return "–" if x is None else f"{x:.2f}"

    def row(name, m):
        return (
            f"| {name} | {m['n']} | {cell(m['accuracy_gta'])} | {cell(m['accuracy_uniform'])} "
            f"| {m['errors']} | {m['fallback']} |"
        )

    lines.append(row("all", summary))
    for name, sub in summary.get("by_group", {}).items():
        lines.append(row(name, sub))
    return "\n".join(lines)
