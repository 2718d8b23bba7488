"""The values of one SceneTG query row, checked: the one validator `scenetg inspect`, `publish`
(`curate.dataset.checks`) and the SceneTG reader of training and eval (`annotation_formats`) run.

A row is valid when its times are finite with ``duration_s > 0`` and
``0 <= start_s < end_s <= duration_s``, its CLIP figures are finite (or null where the schema
allows), its ``split`` is the split its shard is named for, and ``video_id`` / ``video_path``
are safe relative POSIX paths (no ``..``, not absolute, no backslash or control characters), so
a dataset cannot point a reader outside its videos folder. Each problem names the row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

TIME_TOL_S = 1e-6
"""Slack on ``end_s <= duration_s`` (float round-off of the exporter's own clipping)."""
FIGURES = ("clip_self", "clip_best_other", "clip_margin")
MAX_LISTED = 5

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unsafe_relative_path(value: Any) -> str | None:
    """Why `value` is not a safe relative POSIX path, or None when it is."""
    if not isinstance(value, str) or not value.strip():
        return "is empty"
    if "\\" in value:
        return "has a backslash (paths are POSIX, relative to the videos folder)"
    if _CONTROL.search(value):
        return "has a control character"
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        return "is absolute (must be relative to the videos folder)"
    if any(part in ("..", ".") for part in value.split("/")) or "//" in value:
        return "has a '..', '.' or empty path part (must stay inside the videos folder)"
    return None


def _number(row: Mapping[str, Any], key: str, nullable: bool = False) -> tuple[float | None, str | None]:
    value = row.get(key)
    if value is None:
        return None, (None if nullable else f"{key} is null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{key} {value!r} is not a number"
    if not math.isfinite(value):
        return None, f"{key} {value!r} is not finite"
    return float(value), None


def query_row_problems(row: Mapping[str, Any], where: str, shard_split: str | None = None) -> list[str]:
    """Every problem of one query row, each ``"{where}: ..."``; `shard_split` is the split the
    row's shard is named for (None: not checked). Checks only the columns the row has."""
    problems: list[str] = []
    times: dict[str, float | None] = {}
    for key in ("duration_s", "start_s", "end_s"):
        if key in row:
            times[key], problem = _number(row, key)
            if problem:
                problems.append(problem)
    duration, start, end = times.get("duration_s"), times.get("start_s"), times.get("end_s")
    if duration is not None and duration <= 0:
        problems.append(f"duration_s {duration:g} is not > 0")
    if start is not None and start < 0:
        problems.append(f"start_s {start:g} is < 0")
    if start is not None and end is not None and start >= end:
        problems.append(f"start_s {start:g} is not < end_s {end:g}")
    if end is not None and duration is not None and duration > 0 and end > duration + TIME_TOL_S:
        problems.append(f"end_s {end:g} is > duration_s {duration:g}")
    for key in FIGURES:
        if key in row:
            _, problem = _number(row, key, nullable=key != "clip_self")
            if problem:
                problems.append(problem)
    for key in ("video_id", "video_path"):
        if key in row:
            why = unsafe_relative_path(row[key])
            if why:
                problems.append(f"{key} {row[key]!r} {why}")
    if shard_split is not None and "split" in row and row["split"] != shard_split:
        problems.append(f"split {row['split']!r} but the shard is the {shard_split!r} split")
    return [f"{where}: {p}" for p in problems]


def summarize_problems(problems: list[str], limit: int = MAX_LISTED) -> str:
    """The first `limit` problems, ``; ``-joined, with how many more there are."""
    more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
