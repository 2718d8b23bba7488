"""The Parquet tables of a build: explicit schemas, a deterministic atomic writer, readers.

Same rows ⇒ byte-identical files: columns follow the schemas below and every Parquet writer
option is fixed (zstd level 3, format 2.6, `ROW_GROUP_ROWS` rows per row group); no wall-clock
time goes into a file. `export.write_dataset` shards the query tables; this module knows only
single tables and the shard names' split order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scenetg.atomic_files import write_bytes_atomic

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


def sorted_rows(rows: Iterable[Mapping[str, Any]], *keys: str) -> list[Mapping[str, Any]]:
    """`rows` sorted by the values of `keys` (the fixed row order that makes files reproducible)."""
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def videos_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One row per input video (VIDEO_SCHEMA), sorted by video_id."""
    return rows_to_table(sorted_rows(rows, "video_id"), VIDEO_SCHEMA, "video")


def scenes_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One row per scene (SCENE_SCHEMA), sorted by (video_id, scene_index)."""
    return rows_to_table(sorted_rows(rows, "video_id", "scene_index"), SCENE_SCHEMA, "scene")


def write_videos_table(out_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """``OUT/videos.parquet`` (`videos_table`)."""
    return write_table_atomic(videos_table(rows), Path(out_dir) / "videos.parquet")


def write_scenes_table(out_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """``OUT/scenes.parquet`` (`scenes_table`)."""
    return write_table_atomic(scenes_table(rows), Path(out_dir) / "scenes.parquet")


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

