"""Parquet export: explicit schemas, hash-based splits, atomic deterministic writes, dataset card.

Same rows + same config ⇒ byte-identical files: rows are sorted, columns follow the schemas below,
and every Parquet writer option is fixed (zstd level 3, format 2.6, `ROW_GROUP_ROWS` rows per row
group); no wall-clock time goes into a file or the card. Splits with no kept rows get no shard and
are not listed in the card: `datasets.load_dataset` refuses a split with no data.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from scenetg.config import ExportConfig
from scenetg.curate.workdir import swap_in, write_bytes_atomic
from scenetg.errors import ScenetgError

SPLIT_ORDER = ("train", "validation", "test")
"""Fixed order of the cumulative split fractions (and of splits in the card)."""

ROW_GROUP_ROWS = 10_000
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "version": "2.6",
    "data_page_version": "1.0",
    "use_dictionary": True,
    "write_statistics": True,
}

CARD_TEMPLATE = resources.files("scenetg.curate") / "templates" / "scenetg_dataset_card.md"
"""Package data (in the wheel); `data_cards/scenetg_dataset_card.md` in a checkout links to it."""


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


VIDEO_SCHEMA = pa.schema([
    _f("video_id", pa.string()),
    _f("path", pa.string()),
    _f("duration_s", pa.float64(), True),  # metadata is null for videos that failed to probe
    _f("fps", pa.float64(), True),
    _f("width", pa.int32(), True),
    _f("height", pa.int32(), True),
    _f("n_frames", pa.int64(), True),
    _f("status", pa.string()),
    _f("error", pa.string(), True),
])

SCENE_SCHEMA = pa.schema([
    _f("video_id", pa.string()),
    _f("scene_index", pa.int32()),
    _f("start_s", pa.float64()),
    _f("end_s", pa.float64()),
    _f("start_frame", pa.int64()),
    _f("end_frame", pa.int64()),
    _f("n_shots", pa.int32()),
    _f("keyframe_times", pa.list_(pa.float64())),
])

QUERY_SCHEMA = pa.schema([
    _f("sample_id", pa.string()),
    _f("video_id", pa.string()),
    _f("video_path", pa.string()),
    _f("duration_s", pa.float64()),
    _f("start_s", pa.float64()),
    _f("end_s", pa.float64()),
    _f("scene_index", pa.int32()),
    _f("query", pa.string()),
    _f("caption_model", pa.string()),
    _f("clip_model", pa.string()),
    _f("clip_self", pa.float64()),
    _f("clip_best_other", pa.float64(), True),  # null for a single-scene video
    _f("clip_margin", pa.float64(), True),
    _f("clip_rank", pa.int32()),
    _f("confusers", pa.list_(pa.int32())),
    _f("split", pa.string()),
])

AUDIT_SCHEMA = pa.schema([*QUERY_SCHEMA, _f("kept", pa.bool_()), _f("drop_reason", pa.string(), True)])

QUERY_COLUMN_DOCS = {
    "sample_id": "stable id: hash of (video_id, scene_index, query)",
    "video_id": "video path relative to the videos folder, without extension",
    "video_path": "video path relative to the videos folder",
    "duration_s": "video duration in seconds",
    "start_s": "scene start in seconds (ground-truth interval start)",
    "end_s": "scene end in seconds (ground-truth interval end, exclusive)",
    "scene_index": "index of the scene in its video, from 0",
    "query": "the grounding query (the scene's caption)",
    "caption_model": "MLLM that wrote the query",
    "clip_model": "OpenCLIP model of the ambiguity filter",
    "clip_self": "cosine of the query and its own scene",
    "clip_best_other": "highest cosine of the query and another scene of the video",
    "clip_margin": "clip_self - clip_best_other",
    "clip_rank": "rank of the own scene among the video's scenes (1 = best)",
    "confusers": "other scenes with cosine >= clip_self - min_margin",
    "split": "train / validation / test, by a hash of video_id",
    "kept": "whether the query passed the filter (audit only)",
    "drop_reason": "why it was dropped: empty_caption, not_top1, ambiguous, single_scene (audit only)",
}

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


# ----- tables and atomic writes -----------------------------------------------------------------
def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema, what: str = "row") -> pa.Table:
    """Build a table with exactly ``schema``'s columns (extra keys ignored, missing ones fail)."""
    rows = list(rows)
    arrays = []
    for fld in schema:
        try:
            values = [r[fld.name] for r in rows]
        except KeyError:
            raise ValueError(f"{what} rows: missing column {fld.name!r}") from None
        arr = pa.array(values, type=fld.type)
        if not fld.nullable and arr.null_count:
            raise ValueError(f"{what} rows: column {fld.name!r} must not be null")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` as Parquet atomically (`write_bytes_atomic`): on failure an
    existing ``path`` is untouched. A shard is serialised in memory first (shards are bounded
    by ``rows_per_shard``).

    An empty table is written with no row group (readers such as `datasets` reject a 0-row group).
    """
    path = Path(path)
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, **PARQUET_OPTIONS) as writer:
        if table.num_rows:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    write_bytes_atomic(path, sink.getvalue().to_pybytes())
    return path


def _sorted(rows: Iterable[Mapping[str, Any]], *keys: str) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def videos_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One row per input video (VIDEO_SCHEMA), sorted by video_id."""
    return rows_to_table(_sorted(rows, "video_id"), VIDEO_SCHEMA, "video")


def scenes_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One row per scene (SCENE_SCHEMA), sorted by (video_id, scene_index)."""
    return rows_to_table(_sorted(rows, "video_id", "scene_index"), SCENE_SCHEMA, "scene")


def write_videos_table(out_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """``OUT/videos.parquet`` (`videos_table`)."""
    return write_table_atomic(videos_table(rows), Path(out_dir) / "videos.parquet")


def write_scenes_table(out_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """``OUT/scenes.parquet`` (`scenes_table`)."""
    return write_table_atomic(scenes_table(rows), Path(out_dir) / "scenes.parquet")


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
    queries = _sorted(queries, "video_id", "scene_index", "sample_id")
    audit = _sorted(audit, "video_id", "scene_index", "sample_id")

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


# ----- dataset card -----------------------------------------------------------------------------
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


# ----- readers (for `scenetg inspect` and tests) ------------------------------------------------
def _read_shards(files: list[Path], schema: pa.Schema) -> pa.Table:
    if not files:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=schema) for f in files])


def read_queries(out_dir: str | Path, split: str | None = None) -> pa.Table:
    """The kept queries of one split (or of all, in train, validation, test order)."""
    splits = [split] if split is not None else list(SPLIT_ORDER)
    files = [p for s in splits for p in sorted((Path(out_dir) / "data").glob(f"{s}-*.parquet"))]
    return _read_shards(files, QUERY_SCHEMA)


def read_audit(out_dir: str | Path) -> pa.Table:
    """Every generated query with the filter's figures, ``kept`` and ``drop_reason``."""
    return _read_shards(sorted((Path(out_dir) / "audit").glob("queries-*.parquet")), AUDIT_SCHEMA)


def read_videos(out_dir: str | Path) -> pa.Table:
    return pq.read_table(Path(out_dir) / "videos.parquet", schema=VIDEO_SCHEMA)


def read_scenes(out_dir: str | Path) -> pa.Table:
    return pq.read_table(Path(out_dir) / "scenes.parquet", schema=SCENE_SCHEMA)
