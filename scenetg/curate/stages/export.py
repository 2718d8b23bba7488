"""Parquet export: hash-based splits and ids, sharded data/ and audit/ tables and the dataset
card, written into a staging folder and swapped into OUT.

Same rows + same config ⇒ byte-identical files: rows are sorted, and the tables
(`parquet_tables`) and the card (`dataset_card`) are deterministic. Splits with no kept rows get
no shard and are not listed in the card: `datasets.load_dataset` refuses a split with no data.
The schemas, table writers and readers are importable from here too (their public path).
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from scenetg.atomic_files import swap_in, write_bytes_atomic
from scenetg.config import ExportConfig
from scenetg.curate.dataset.card import CARD_TEMPLATE, card_header, render_card
from scenetg.curate.dataset.tables import (
    AUDIT_SCHEMA,
    PARQUET_OPTIONS,
    QUERY_COLUMN_DOCS,
    QUERY_SCHEMA,
    ROW_GROUP_ROWS,
    SCENE_SCHEMA,
    SPLIT_ORDER,
    VIDEO_SCHEMA,
    read_audit,
    read_queries,
    read_scenes,
    read_videos,
    rows_to_table,
    scenes_table,
    sorted_rows,
    videos_table,
    write_scenes_table,
    write_table_atomic,
    write_videos_table,
)

__all__ = [
    "AUDIT_SCHEMA", "CARD_TEMPLATE", "INCOMPLETE", "PARQUET_OPTIONS", "QUERY_COLUMN_DOCS",
    "QUERY_SCHEMA", "ROW_GROUP_ROWS", "SCENE_SCHEMA", "SPLIT_ORDER", "STAGING", "VIDEO_SCHEMA",
    "assign_split", "card_header", "read_audit", "read_queries", "read_scenes", "read_videos",
    "render_card", "rows_to_table", "sample_id", "scenes_table", "videos_table", "write_dataset",
    "write_scenes_table", "write_table_atomic", "write_videos_table",
]

_SHARD_RE = re.compile(r"^(?:train|validation|test|queries)-\d{5}-of-\d{5}\.parquet$")
_TEMP_RE = re.compile(r"^\..+\.tmp$")
STAGING = ".export-staging"
"""New shards and card are written here, then swapped into OUT (`swap_in`)."""
INCOMPLETE = ".export-incomplete"
"""Present while a swap is under way: a killed export leaves it, and `dataset_problems` reports it."""


# ----- ids and splits ---------------------------------------------------------------------------
def sample_id(video_id: str, scene_index: int, query: str) -> str:
    """Stable 16-hex-character id of a query: blake2b of ``video_id, scene_index, query``."""
    key = f"{video_id}\x1f{int(scene_index)}\x1f{query}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def assign_split(video_id: str, splits: Mapping[str, float], salt: str) -> str:
    """The split of a video: ``u = hash(salt, video_id)`` in [0, 1) against the cumulative
    fractions in the fixed order train, validation, test (splits with fraction 0 never occur)."""
    unknown = set(splits) - set(SPLIT_ORDER)
    if unknown:
        raise ValueError(f"assign_split: unknown split(s) {sorted(unknown)}")
    names = [s for s in SPLIT_ORDER if splits.get(s, 0) > 0]
    if not names:
        raise ValueError("assign_split: no split has a fraction > 0")
    digest = hashlib.blake2b(f"{salt}\x1f{video_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    total = 0.0
    for name in names:
        total += splits[name]
        if u < total:
            return name
    return names[-1]  # fractions summing to slightly below 1


def _shards(rows: list[Mapping[str, Any]], rows_per_shard: int) -> list[list]:
    """Consecutive chunks of ``rows_per_shard`` rows; at least one (possibly empty) chunk."""
    n = max(1, math.ceil(len(rows) / rows_per_shard))
    return [rows[i * rows_per_shard:(i + 1) * rows_per_shard] for i in range(n)]


def _copy_user_files(out: Path, stage: Path) -> None:
    """Files a user put in data/ or audit/ (not shards, not temp files) survive a re-export."""
    for folder in ("data", "audit"):
        if (out / folder).is_dir():
            for p in sorted((out / folder).iterdir()):
                if p.is_file() and not (_SHARD_RE.match(p.name) or _TEMP_RE.match(p.name)):
                    (stage / folder).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, stage / folder / p.name)


# ----- the dataset ------------------------------------------------------------------------------
def _complete(rows: Iterable[Mapping[str, Any]], cfg: ExportConfig) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``sample_id`` and ``split`` filled in where missing."""
    out = []
    for r in rows:
        d = dict(r)
        if d.get("sample_id") is None:
            d["sample_id"] = sample_id(d["video_id"], d["scene_index"], d["query"])
        if d.get("split") is None:
            d["split"] = assign_split(d["video_id"], cfg.splits, cfg.split_salt)
        out.append(d)
    return out


def _check_splits(rows: list[dict[str, Any]], cfg: ExportConfig) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        if r["split"] not in cfg.splits:
            raise ValueError(f"{r['video_id']}: split {r['split']!r} is not in export.splits")
        if seen.setdefault(r["video_id"], r["split"]) != r["split"]:
            raise ValueError(f"{r['video_id']}: rows in two splits ({seen[r['video_id']]}, {r['split']})")


def write_dataset(
    out_dir: str | Path,
    query_rows: Iterable[Mapping[str, Any]],
    audit_rows: Iterable[Mapping[str, Any]],
    cfg: ExportConfig,
    card_context: Mapping[str, Any] | None = None,
    extra_tables: Mapping[str, pa.Table] | None = None,
) -> dict[str, list[Path]]:
    """Write the kept queries, the audit table and the dataset card into ``out_dir``.

    - ``query_rows`` (kept queries, QUERY_SCHEMA columns) → ``data/{split}-{i:05d}-of-{n:05d}.parquet``,
      ``cfg.rows_per_shard`` rows per shard, sorted by (video_id, scene_index, sample_id);
    - ``audit_rows`` (every generated query, AUDIT_SCHEMA columns) → ``audit/queries-*.parquet``;
    - ``README.md`` from `CARD_TEMPLATE` with ``card_context`` (see `render_card`).

    - ``extra_tables`` (file name -> table, e.g. ``videos.parquet``) go into ``out_dir`` with them.

    ``sample_id`` / ``split`` are computed where a row lacks them. Everything is written into
    ``OUT/.export-staging`` first and then swapped in (`swap_in`), so a kill or a full disk
    leaves the previous dataset whole (or, mid-swap, a marker that
    `dataset_checks.dataset_problems` reports), never old and new shards side by side. Returns the written paths by split name,
    plus ``"audit"`` and ``"card"``.
    """
    cfg.validate()
    out = Path(out_dir)
    queries = _complete(query_rows, cfg)
    audit = _complete(audit_rows, cfg)
    _check_splits(queries + audit, cfg)
    queries = sorted_rows(queries, "video_id", "scene_index", "sample_id")
    audit = sorted_rows(audit, "video_id", "scene_index", "sample_id")

    # Build every table first: bad rows fail before anything on disk changes.
    planned: dict[str, list[tuple[Path, pa.Table]]] = {}
    for split in SPLIT_ORDER:
        rows = [r for r in queries if r["split"] == split]
        if rows:
            shards = _shards(rows, cfg.rows_per_shard)
            planned[split] = [
                (Path("data") / f"{split}-{i:05d}-of-{len(shards):05d}.parquet",
                 rows_to_table(chunk, QUERY_SCHEMA, "query"))
                for i, chunk in enumerate(shards)
            ]
    shards = _shards(audit, cfg.rows_per_shard)
    planned["audit"] = [
        (Path("audit") / f"queries-{i:05d}-of-{len(shards):05d}.parquet",
         rows_to_table(chunk, AUDIT_SCHEMA, "audit"))
        for i, chunk in enumerate(shards)
    ]
    card = render_card(queries, audit, cfg, card_context or {})

    stage = out / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    try:
        for items in planned.values():
            for rel, table in items:
                write_table_atomic(table, stage / rel)
        for name, table in (extra_tables or {}).items():
            write_table_atomic(table, stage / name)
        write_bytes_atomic(stage / "README.md", card.encode("utf-8"))
        _copy_user_files(out, stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # e.g. a full disk: free what was written
        raise
    swap_in(stage, out, ["data", "audit", "README.md", *(extra_tables or {})], out / INCOMPLETE)
    written = {name: [out / rel for rel, _ in items] for name, items in planned.items()}
    written["card"] = [out / "README.md"]
    return written

