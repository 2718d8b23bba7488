"""Benchmark annotation loaders: every format to `GroundingRecord`s plus one `LoadReport`.

Formats (`format=` names; `auto` detects them, see `detect_format`) and the qid each record gets:

- `charades` — Charades-STA txt, `VID START END##query` per line, or the 4-field variant
  `VID START END X##query` (X ignored). No durations in the file: they come from `durations`,
  a metadata CSV (`Charades_v1_test.csv`: `id`, `length`) or probing `videos_dir/VID.*`.
  qid: `"{VID}_{line_no}"` (1-based line number in the file).
- `jsonl` — Moment-DETR / UniVTG JSONL (QVHighlights, TACoS, Ego4D-NLQ and Charades converted to
  it): `{qid, query, duration, vid, relevant_windows}` per line. Also plain JSONL of the common
  record (`video_id`, `duration_s`, `query`, `windows` or `start_s`/`end_s`, optional `qid` or
  `sample_id`), GroundNLQ's Ego4D-NLQ JSONL (`query_id`, `video_id`, `timestamps`), and a
  `.json` file holding a list of such objects. qid: the line's `qid` (`sample_id`,
  `query_id`), as a string; else `"{vid}_{line_no}"` (`"{vid}_{index}"` in a JSON list).
- `activitynet` — ActivityNet Captions JSON `{vid: {duration, timestamps, sentences}}`.
  qid: `"{vid}_{sentence_index}"` (0-based). Sentences are stripped of surrounding spaces.
- `ego4d_nlq` — Ego4D-NLQ official JSON, `videos[].clips[].annotations[].language_queries[]`;
  one record per language query, on the clip's timeline (video_id = `clip_uid`, duration =
  clip `clip_end_sec - clip_start_sec`, window = the query's `clip_start_sec, clip_end_sec`).
  qid: `"{annotation_uid}_{query_index}"` (as the official evaluation pairs them); queries
  with no text are skipped and counted (kept with `keep_no_text`, as `ego4d_nlq` scores them).
- `mad` — MAD JSON `{qid: {movie, sentence, timestamps, ext_timestamps, movie_duration}}`; the
  window is `ext_timestamps` when present (what MAD evaluates on). qid: the key.
- `scenetg` — SceneTG Parquet: a build folder `OUT/` (reads `OUT/data/`), a folder of query
  Parquet files, one `.parquet` file, or a Hub dataset `hub:ORG/NAME` (`datasets.load_dataset`); optional
  `split` filter. qid: `sample_id`.

Malformed input raises `ScenetgError("FILE:LINE: reason")` (in a one-line JSON document
`"FILE: KEY: reason"`, the record's key or index). The readers live in `annotation_formats.py`,
one per format. Load time is linear in the file size. Window fixes follow `LoadReport`'s
rules. qids must be unique in a file (predictions are keyed by them).
"""

from __future__ import annotations

import csv
import gc
import json
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from scenetg.errors import ScenetgError
from scenetg.grounding.annotation_formats import (
    HUB_PREFIX,
    _first_line,
    _hub_hint,
    _load_json_doc,
    _positive,
    _Raw,
    _read_activitynet,
    _read_charades,
    _read_ego4d_nlq,
    _read_jsonl,
    _read_mad,
    _read_scenetg,
    text_lines,
)
from scenetg.grounding.records import GroundingRecord, LoadReport
from scenetg.video.lookup import find_video

FORMATS = ("charades", "jsonl", "activitynet", "ego4d_nlq", "mad", "scenetg")
FORMAT_ALIASES = {
    "charades_sta": "charades",
    "txt": "charades",
    "momentdetr": "jsonl",
    "moment_detr": "jsonl",
    "univtg": "jsonl",
    "qvhighlights": "jsonl",
    "tacos": "jsonl",
    "activitynet_captions": "activitynet",
    "ego4d": "ego4d_nlq",
    "nlq": "ego4d_nlq",
    "parquet": "scenetg",
}
DURATION_TOL_S = 1e-6
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


# --------------------------------------------------------------------------- public API


def load_annotations(
    path: str | Path,
    format: str = "auto",
    durations: dict[str, float] | None = None,
    metadata_csv: str | Path | None = None,
    videos_dir: str | Path | None = None,
    split: str | None = None,
    check_values: bool = False,
    keep_no_text: bool = False,
) -> tuple[list[GroundingRecord], LoadReport]:
    """Read one annotation file (or Parquet folder / Hub id) into records and a load report.
    `check_values`: SceneTG rows must pass `grounding.query_values` (training data; the same
    check as `scenetg inspect` / `publish`).

    `keep_no_text`: keep queries with no text that have a GT window (query ""), as a protocol
    that scores them asks (`Protocol.keep_no_text`: Ego4D-NLQ); skipped otherwise.

    Durations missing from the file come, in this order, from `durations` (video_id -> s), the
    metadata CSV, then probing the video in `videos_dir`; the file's own duration always wins.
    """
    fmt = _canonical_format(format) if format != "auto" else detect_format(path)
    path_s = str(path)
    report = LoadReport(path=path_s, format=fmt)
    if fmt == "scenetg":
        raws: Iterable[_Raw] = _read_scenetg(path_s, split, check_values)
    else:
        p = Path(path)
        if not p.is_file():
            raise ScenetgError(f"{path}: annotation file not found")
        if split is not None:
            raise ScenetgError(f"{path}: --split applies to SceneTG Parquet only, not {fmt!r}")
        reader = {
            "charades": _read_charades,
            "jsonl": _read_jsonl,
            "activitynet": _read_activitynet,
            "ego4d_nlq": _read_ego4d_nlq,
            "mad": _read_mad,
        }[fmt]
        raws = reader(p, report)
    source = _DurationSource(durations, metadata_csv, videos_dir, report)
    with _no_cyclic_gc():
        records = _finish(raws, source, report, keep_no_text)
    return records, report


@contextmanager
def _no_cyclic_gc():
    """Parsing builds millions of small acyclic objects (MAD: 280k records); Python's cyclic
    collector would re-scan them all again and again (half the load time, measured). Reference
    counting still frees everything; the collector is switched back on afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def detect_format(path: str | Path) -> str:
    """Guess the format of `path`.

    Rules: a folder, `*.parquet` or `hub:ORG/NAME` ⇒ `scenetg`; `*.txt` ⇒ `charades`; `*.jsonl` ⇒ `jsonl`; `*.json` ⇒ by content: a top-level
    `videos` list ⇒ `ego4d_nlq`, a list ⇒ `jsonl`, a dict whose first value has `sentences` and
    `timestamps` ⇒ `activitynet`, one with `movie` or `sentence` ⇒ `mad`. Any other extension:
    a first line containing `##` ⇒ `charades`, a first line that is a JSON object ⇒ `jsonl`,
    else as `*.json`.
    """
    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".parquet":
        return "scenetg"
    if str(path).startswith(HUB_PREFIX):
        return "scenetg"
    if not p.exists():
        build = "" if p.suffix else " (a SceneTG build? run `scenetg build` / `make build` first)"
        raise ScenetgError(f"{path}: annotation file or folder not found{build}{_hub_hint(str(path))}")
    suffix = p.suffix.lower()
    if suffix == ".txt":
        return "charades"
    if suffix == ".jsonl":
        return "jsonl"
    if suffix != ".json":
        first = _first_line(p)
        if "##" in first:
            return "charades"
        try:
            if isinstance(json.loads(first), dict):
                return "jsonl"
        except ValueError:
            pass
    doc, _ = _load_json_doc(p)
    if isinstance(doc, list):
        return "jsonl"
    if isinstance(doc, dict):
        if isinstance(doc.get("videos"), list):
            return "ego4d_nlq"
        first_value = next(iter(doc.values()), None)
        if isinstance(first_value, dict):
            if "sentences" in first_value and "timestamps" in first_value:
                return "activitynet"
            if "movie" in first_value or "sentence" in first_value:
                return "mad"
    raise ScenetgError(
        f"{path}: cannot tell the annotation format; pass --format (one of {', '.join(FORMATS)})"
    )


def read_metadata_durations(csv_path: str | Path) -> dict[str, float]:
    """video_id -> duration (s) from a metadata CSV: id column `id`/`video_id`/`vid`, duration
    column `length`/`duration_s`/`duration` (Charades_v1_test.csv has `id` and `length`)."""
    p = Path(csv_path)
    if not p.is_file():
        raise ScenetgError(f"{csv_path}: metadata CSV not found")
    reader = csv.DictReader(_csv_rows(p))
    fields = reader.fieldnames or []
    id_col = next((c for c in ("id", "video_id", "vid") if c in fields), None)
    len_col = next((c for c in ("length", "duration_s", "duration") if c in fields), None)
    if id_col is None or len_col is None:
        raise ScenetgError(
            f"{csv_path}:1: need an id column (id/video_id/vid) and a duration column "
            f"(length/duration_s/duration); found {fields}"
        )
    out: dict[str, float] = {}
    for row in reader:
        where = f"{csv_path}:{reader.line_num}"
        out[row[id_col]] = _positive(row[len_col], where, len_col)
    return out


def _csv_rows(p: Path) -> list[str]:
    """The CSV's lines, decoded as UTF-8 (one-line error naming the line otherwise)."""
    return [line for _, line in text_lines(p)]


# --------------------------------------------------------------------------- shared steps


def _canonical_format(fmt: str) -> str:
    key = fmt.strip().lower().replace("-", "_")
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise ScenetgError(
            f"unknown annotation format {fmt!r}; use auto or one of {', '.join(FORMATS)}"
        )
    return key


class _DurationSource:
    """Fills durations a file lacks: explicit dict, then metadata CSV, then probing the video."""

    def __init__(self, durations, metadata_csv, videos_dir, report: LoadReport) -> None:
        self.table: dict[str, float] = {}
        if metadata_csv is not None:
            self.table.update(read_metadata_durations(metadata_csv))
        if durations:
            self.table.update({str(k): float(v) for k, v in durations.items()})
        self.videos_dir = Path(videos_dir) if videos_dir is not None else None
        self.probed: dict[str, float | None] = {}
        self.report = report

    def get(self, video_id: str) -> float | None:
        if video_id in self.table:
            return self.table[video_id]
        if self.videos_dir is None:
            return None
        if video_id not in self.probed:
            self.probed[video_id] = self._probe(video_id)
        return self.probed[video_id]

    def _probe(self, video_id: str) -> float | None:
        from scenetg.video.probe import probe_video  # lazy: PyAV only when probing is needed

        assert self.videos_dir is not None
        try:
            found = find_video(self.videos_dir, video_id)  # ids never leave the videos folder
        except ScenetgError as exc:
            self.report.note(video_id, str(exc))
            return None
        if found is None:
            self.report.note(video_id, f"no video file in {self.videos_dir}")
            return None
        try:
            duration = probe_video(found).duration_s
        except ScenetgError as exc:
            self.report.note(video_id, f"cannot probe duration: {exc}")
            return None
        if not duration or duration <= 0:
            self.report.note(video_id, f"{found.name}: probe gave no duration")
            return None
        return float(duration)


def _finish(
    raws: Iterable[_Raw], source: _DurationSource, report: LoadReport, keep_no_text: bool = False
) -> list[GroundingRecord]:
    """Fill durations, apply the window rules, check qid uniqueness, count everything."""
    records: list[GroundingRecord] = []
    first_seen: dict[str, str] = {}
    for raw in raws:
        qid = raw.qid
        if qid in first_seen:
            raise ScenetgError(f"{raw.where}: duplicate qid {qid!r} (first at {first_seen[qid]})")
        first_seen[qid] = raw.where
        if not raw.query.strip():
            if not (keep_no_text and raw.windows):
                report.records_skipped += 1
                report.note(raw.where, "no query text; skipped")
                continue
            report.records_no_text += 1
            report.note(raw.where, "no query text; kept (the protocol scores it when predicted)")
        duration = raw.duration_s if raw.duration_s is not None else source.get(raw.video_id)
        windows: list[tuple[float, float]] = []
        for start, end in raw.windows:
            clipped = False
            if start < 0:
                start, clipped = 0.0, True
            if duration is not None and end > duration:
                clipped = clipped or end > duration + DURATION_TOL_S
                end = duration
            if clipped:
                report.windows_clipped += 1
                report.note(
                    raw.where, f"window clipped to [{start:g}, {end:g}] (duration {duration:g})"
                )
            if start >= end:  # kept: it scores IoU 0, as the benchmarks' own scripts score it
                report.windows_degenerate += 1
                report.note(raw.where, f"window [{start:g}, {end:g}] has zero length; kept")
            windows.append((start, end))
        if all(start >= end for start, end in windows):
            report.records_degenerate += 1
        if duration is None:
            report.missing_duration += 1
        raw_windows = None if windows == raw.windows else list(raw.windows)
        records.append(
            GroundingRecord(qid, raw.video_id, duration, raw.query, windows, raw_windows)
        )
    report.n_records = len(records)
    return records
