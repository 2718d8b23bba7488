"""The dataset card (`OUT/README.md`): the Hub's YAML header (configs, splits) and the text from
the Jinja template shipped as package data. Deterministic: only rows, config and context go in.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from scenetg.config import ExportConfig
from scenetg.curate.dataset.tables import QUERY_COLUMN_DOCS, QUERY_SCHEMA, SPLIT_ORDER
from scenetg.errors import ScenetgError

CARD_TEMPLATE = resources.files("scenetg.curate.dataset") / "templates" / "scenetg_dataset_card.md"
"""Package data (in the wheel); `data_cards/scenetg_dataset_card.md` in a checkout links to it."""


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return {"double": "float64", "bool": "bool"}.get(str(t), str(t))


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def card_header(split_names: list[str], has_audit: bool, ctx: Mapping[str, Any], n_rows: int) -> dict:
    """The card's YAML metadata (the Hub's documented ``configs`` format)."""
    configs = []
    if split_names:
        configs.append({"config_name": "default", "data_files": [
            {"split": s, "path": f"data/{s}-*"} for s in split_names]})
    if has_audit:
        configs.append({"config_name": "audit", "data_files": [
            {"split": "audit", "path": "audit/queries-*"}]})
    return {
        "pretty_name": ctx.get("pretty_name", "SceneTG grounding dataset"),
        "license": ctx.get("license", "other"),
        "task_categories": list(ctx.get("task_categories", ["video-text-to-text"])),
        "tags": list(ctx.get("tags", ["temporal-grounding", "video-grounding", "long-video",
                                      "scenetg"])),
        "size_categories": [_size_category(n_rows)],
        "configs": configs,
    }


def _distinct(rows: list[Mapping[str, Any]], key: str) -> str | None:
    values = sorted({str(r[key]) for r in rows if r.get(key)})
    return ", ".join(values) or None


def render_card(
    query_rows: list[Mapping[str, Any]],
    audit_rows: list[Mapping[str, Any]],
    cfg: ExportConfig,
    context: Mapping[str, Any],
    template: str | Path | None = None,
) -> str:
    """Render the dataset card (deterministic: only rows, config and ``context`` go in).

    Counts are computed from the rows. Optional ``context`` keys: ``pretty_name``, ``repo_id``
    (``USER/NAME``), ``license``, ``task_categories``, ``tags``, ``caption_model``, ``clip_model``,
    ``min_margin``, ``n_videos``, ``hours`` (both derived from the audit rows when absent),
    ``description``, ``citation``, ``date``, ``config`` (the build config, shown as YAML).
    """
    import jinja2

    path = Path(template) if template is not None else CARD_TEMPLATE  # Path or Traversable
    if not path.is_file():
        raise ScenetgError(f"{path}: dataset card template not found")
    split_counts = {s: sum(r["split"] == s for r in query_rows) for s in SPLIT_ORDER}
    split_names = [s for s in SPLIT_ORDER if split_counts[s]]
    drops: dict[str, int] = {}
    for r in audit_rows:
        if not r["kept"]:
            reason = r["drop_reason"] or "unknown"
            drops[reason] = drops.get(reason, 0) + 1
    durations = {r["video_id"]: float(r["duration_s"]) for r in audit_rows}
    hours = context.get("hours")
    if hours is None:
        hours = sum(durations.values()) / 3600
    header = card_header(split_names, bool(audit_rows), context, len(query_rows))
    config = context.get("config")
    values = {
        "yaml_header": yaml.safe_dump(header, sort_keys=False, allow_unicode=True),
        "pretty_name": header["pretty_name"],
        "repo_id": context.get("repo_id", "USER/NAME"),
        "license": header["license"],
        "description": context.get("description"),
        "caption_model": context.get("caption_model") or _distinct(audit_rows, "caption_model"),
        "clip_model": context.get("clip_model") or _distinct(audit_rows, "clip_model"),
        "min_margin": context.get("min_margin"),
        "n_videos": context.get("n_videos", len(durations)),
        "hours": round(float(hours), 2),
        "n_generated": len(audit_rows),
        "n_kept": len(query_rows),
        "n_dropped": len(audit_rows) - len(query_rows),
        "drop_counts": dict(sorted(drops.items())),
        "split_counts": {s: split_counts[s] for s in split_names},
        "split_fractions": {s: cfg.splits[s] for s in SPLIT_ORDER if s in cfg.splits},
        "empty_splits": [s for s in SPLIT_ORDER if cfg.splits.get(s, 0) > 0 and not split_counts[s]],
        "schema": [{"name": f.name, "type": _type_name(f.type),
                    "description": QUERY_COLUMN_DOCS.get(f.name, "")} for f in QUERY_SCHEMA],
        "citation": context.get("citation"),
        "date": context.get("date"),
        "config_yaml": yaml.safe_dump(config, sort_keys=True) if config else None,
    }
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    text = env.from_string(path.read_text(encoding="utf-8")).render(**values)
    return text.rstrip("\n") + "\n"

