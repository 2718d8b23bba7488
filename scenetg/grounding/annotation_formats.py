"""Per-format annotation readers behind `loaders.load_annotations`: each yields `_Raw` queries as
read from the file (durations not yet filled in, windows not yet clipped), plus the value and
text helpers they share. Messages name the file and the record (`FILE:LINE` or `FILE: KEY`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scenetg.errors import ScenetgError
from scenetg.grounding.query_values import query_row_problems, summarize_problems
from scenetg.grounding.records import LoadReport

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PREFIX = "hub:"
"""A Hub dataset is named explicitly (``hub:ORG/NAME``): a relative path such as ``out/dataset``
is always a path, never looked up on the Hub."""


def _hub_hint(path: str) -> str:
    return f"; a Hub dataset is written {HUB_PREFIX}{path}" if _HUB_ID.match(path) else ""


@dataclass
class _Raw:
    """One query as read from the file, before durations are filled in and windows fixed."""

    qid: str
    video_id: str
    duration_s: float | None
    query: str
    windows: list[tuple[float, float]]
    where: str  # "FILE:LINE" (or "FILE: row R"), for messages


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ScenetgError(f"{where}: {what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ScenetgError(f"{where}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ScenetgError(f"{where}: {what} must be finite, got {value!r}")
    return x


def _positive(value, where: str, what: str) -> float:
    x = _number(value, where, what)
    if x <= 0:
        raise ScenetgError(f"{where}: {what} must be > 0, got {value!r}")
    return x


def _optional_duration(value, where: str, what: str) -> float | None:
    return None if value is None else _positive(value, where, what)


def _window(value, where: str, what: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ScenetgError(f"{where}: {what} must be a [start, end] pair, got {value!r}")
    return _number(value[0], where, f"{what} start"), _number(value[1], where, f"{what} end")


def _windows(value, where: str, what: str) -> list[tuple[float, float]]:
    """A list of [s, e] pairs, or a single [s, e] pair."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and not isinstance(value[0], (list, tuple))
    ):
        return [_window(value, where, what)]
    if not isinstance(value, (list, tuple)) or not value:
        raise ScenetgError(
            f"{where}: {what} must be a non-empty list of [start, end], got {value!r}"
        )
    return [_window(w, where, what) for w in value]


def _text(value, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise ScenetgError(f"{where}: {what} must be a string, got {value!r}")
    return value


def _first_line(p: Path) -> str:
    with p.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                return line.strip()
    raise ScenetgError(f"{p}: empty annotation file")


def not_utf8(where: str, exc: UnicodeDecodeError) -> ScenetgError:
    """The one-line error for text that is not UTF-8 (`where`: FILE or FILE:LINE)."""
    bad = exc.object[exc.start : exc.start + 1].hex()
    return ScenetgError(
        f"{where}: not UTF-8 text (byte 0x{bad} at offset {exc.start}); re-save it as UTF-8"
    )


def text_lines(p: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of a UTF-8 file, decoded line by line so that a bad byte is
    reported with its line (a BOM on the first line is dropped)."""
    with p.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(f"{p}:{line_no}", exc) from None
            yield line_no, line.lstrip("\ufeff") if line_no == 1 else line


def read_utf8(p: Path) -> str:
    """A whole UTF-8 file's text (a BOM dropped); `not_utf8`'s one-line error otherwise."""
    try:
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(str(p), exc) from None


def _load_json_doc(p: Path):
    """Parse a whole JSON file; errors name the line and column."""
    text = read_utf8(p)
    if not text.strip():
        raise ScenetgError(f"{p}: empty annotation file")
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise ScenetgError(
            f"{p}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None


class _Locator:
    """Where a record of a parsed JSON document is, for messages: `FILE:LINE: PATH` in a file of
    several lines, `FILE: PATH` (the record's key or index) in a one-line file, where a line
    number says nothing. Lines are counted forward from the previous record only, so locating
    every record of a file costs one pass over its text (MAD: 280k records)."""

    def __init__(self, p: Path, text: str) -> None:
        self.p, self.text = p, text
        self.multiline = "\n" in text.strip()
        self.offset, self.line = 0, 1

    def __call__(self, path: str, needle: str | None = None) -> str:
        if not self.multiline:
            return f"{self.p}: {path}"
        if needle:
            off = self.text.find(needle, self.offset)
            if off >= 0:
                self.line += self.text.count("\n", self.offset, off)
                self.offset = off
        return f"{self.p}:{self.line}: {path}"


# --------------------------------------------------------------------------- formats


def _read_charades(p: Path, report: LoadReport) -> Iterator[_Raw]:
    for line_no, line in text_lines(p):
        line = line.strip()
        if not line:
            continue
        where = f"{p}:{line_no}"
        if "##" not in line:
            raise ScenetgError(f"{where}: expected 'VID START END##query', got {line[:80]!r}")
        head, query = line.split("##", 1)
        fields = head.split()
        if len(fields) not in (3, 4):
            raise ScenetgError(
                f"{where}: expected 'VID START END##query' (or 'VID START END X##query'), "
                f"got {len(fields)} fields before '##'"
            )
        vid = fields[0]
        window = (_number(fields[1], where, "start"), _number(fields[2], where, "end"))
        yield _Raw(f"{vid}_{line_no}", vid, None, query.strip(), [window], where)


def _jsonl_item(obj, where: str, fallback_qid: str) -> _Raw:
    if not isinstance(obj, dict):
        raise ScenetgError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    vid = next((obj[k] for k in ("vid", "video_id", "video") if k in obj), None)
    if vid is None:
        raise ScenetgError(f"{where}: no video id ('vid' or 'video_id')")
    vid = str(vid)
    query = next((obj[k] for k in ("query", "sentence") if k in obj), None)
    if query is None:
        raise ScenetgError(f"{where}: no 'query'")
    query = _text(query, where, "query")
    dkey = next((k for k in ("duration", "duration_s") if k in obj), None)
    duration = _optional_duration(obj[dkey], where, dkey) if dkey else None
    wkey = next((k for k in WINDOW_KEYS if k in obj), None)
    if wkey is not None:
        windows = _windows(obj[wkey], where, wkey)
    elif "start_s" in obj and "end_s" in obj:
        windows = [_window([obj["start_s"], obj["end_s"]], where, "start_s/end_s")]
    else:
        raise ScenetgError(
            f"{where}: no GT windows: expected one of "
            f"{', '.join(repr(k) for k in WINDOW_KEYS)} or 'start_s'/'end_s'; found keys "
            f"{sorted(obj)[:12]} (a test split without annotations?)"
        )
    qid = next((obj[k] for k in QID_KEYS if k in obj), None)
    qid = fallback_qid if qid is None else str(qid)
    return _Raw(qid, vid, duration, query.strip(), windows, where)


def _read_jsonl(p: Path, report: LoadReport) -> Iterator[_Raw]:
    if p.suffix.lower() == ".json":
        doc, text = _load_json_doc(p)
        if not isinstance(doc, list):
            raise ScenetgError(f"{p}: expected a JSON list of query objects")
        locate = _Locator(p, text)
        for i, obj in enumerate(doc):
            where = locate(f"item {i}", "{")
            locate.offset += 1
            vid = obj.get("vid", obj.get("video_id")) if isinstance(obj, dict) else None
            yield _jsonl_item(obj, where, f"{vid}_{i}")
        return
    for line_no, line in text_lines(p):
        if not line.strip():
            continue
        where = f"{p}:{line_no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScenetgError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        vid = obj.get("vid", obj.get("video_id")) if isinstance(obj, dict) else None
        yield _jsonl_item(obj, where, f"{vid}_{line_no}")


def _read_activitynet(p: Path, report: LoadReport) -> Iterator[_Raw]:
    doc, text = _load_json_doc(p)
    if not isinstance(doc, dict):
        raise ScenetgError(f"{p}: expected {{video_id: {{duration, timestamps, sentences}}}}")
    locate = _Locator(p, text)
    for vid, item in doc.items():
        where = locate(vid, json.dumps(vid))
        if not isinstance(item, dict):
            raise ScenetgError(f"{where}: expected an object with duration, timestamps, sentences")
        for key in ("duration", "timestamps", "sentences"):
            if key not in item:
                raise ScenetgError(f"{where}: no {key!r}")
        duration = _positive(item["duration"], where, "duration")
        stamps, sentences = item["timestamps"], item["sentences"]
        if not isinstance(stamps, list) or not isinstance(sentences, list):
            raise ScenetgError(f"{where}: 'timestamps' and 'sentences' must be lists")
        if len(stamps) != len(sentences):
            raise ScenetgError(f"{where}: {len(stamps)} timestamps but {len(sentences)} sentences")
        for i, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
            w = f"{where}[{i}]"
            window = _window(stamp, w, "timestamp")
            yield _Raw(
                f"{vid}_{i}",
                str(vid),
                duration,
                _text(sentence, w, "sentence").strip(),
                [window],
                w,
            )


def _read_ego4d_nlq(p: Path, report: LoadReport) -> Iterator[_Raw]:
    doc, text = _load_json_doc(p)
    videos = doc.get("videos") if isinstance(doc, dict) else None
    if not isinstance(videos, list):
        raise ScenetgError(f"{p}: expected Ego4D-NLQ JSON with a top-level 'videos' list")
    locate = _Locator(p, text)
    for vi, video in enumerate(videos):
        for ci, clip in enumerate(_objects(video, "clips", f"{p}: videos[{vi}]")):
            path = f"videos[{vi}].clips[{ci}]"
            clip_uid = clip.get("clip_uid")
            where = locate(path, json.dumps(clip_uid) if isinstance(clip_uid, str) else None)
            if not clip_uid:
                raise ScenetgError(f"{where}: no 'clip_uid'")
            if "clip_start_sec" not in clip or "clip_end_sec" not in clip:
                raise ScenetgError(f"{where}: no 'clip_start_sec'/'clip_end_sec'")
            start = _number(clip["clip_start_sec"], where, "clip_start_sec")
            duration = _number(clip["clip_end_sec"], where, "clip_end_sec") - start
            if duration <= 0:
                raise ScenetgError(f"{where}: clip_end_sec <= clip_start_sec")
            for ai, ann in enumerate(_objects(clip, "annotations", where)):
                uid = ann.get("annotation_uid")
                a_where = locate(
                    f"{path}.annotations[{ai}]", json.dumps(uid) if isinstance(uid, str) else None
                )
                if not uid:
                    raise ScenetgError(f"{a_where}: no 'annotation_uid'")
                for qi, lq in enumerate(_objects(ann, "language_queries", a_where)):
                    q_where = f"{a_where}.language_queries[{qi}]"
                    query = lq.get("query")
                    query = "" if query is None else _text(query, q_where, "query").strip()
                    pair = [lq.get("clip_start_sec"), lq.get("clip_end_sec")]
                    if query:
                        windows = [_window(pair, q_where, "clip_start_sec/clip_end_sec")]
                    else:  # no text: kept only if asked (`keep_no_text`) and its window reads
                        try:
                            windows = [_window(pair, q_where, "clip_start_sec/clip_end_sec")]
                        except ScenetgError:
                            windows = []
                    yield _Raw(f"{uid}_{qi}", str(clip_uid), duration, query, windows, q_where)


def _objects(parent, key: str, where: str) -> list[dict]:
    """`parent[key]` as a list of JSON objects (missing or null: none); a one-line error naming
    the record otherwise (Ego4D's nesting: videos -> clips -> annotations -> language_queries)."""
    if not isinstance(parent, dict):
        raise ScenetgError(f"{where}: expected a JSON object, got {json.dumps(parent)[:40]}")
    items = parent.get(key) or []
    if not isinstance(items, list):
        raise ScenetgError(f"{where}: '{key}' must be a list, got {json.dumps(items)[:40]}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ScenetgError(
                f"{where}.{key}[{i}]: expected a JSON object, got {json.dumps(item)[:40]}"
            )
    return items


def _read_mad(p: Path, report: LoadReport) -> Iterator[_Raw]:
    """MAD: the window is `ext_timestamps` when present (MAD's release evaluates on it: windows
    under 2 s stretched to 2 s, and its baselines read it), else `timestamps`."""
    doc, text = _load_json_doc(p)
    if not isinstance(doc, dict):
        raise ScenetgError(f"{p}: expected {{qid: {{movie, sentence, timestamps, movie_duration}}}}")
    locate = _Locator(p, text)
    for qid, item in doc.items():
        where = locate(qid, json.dumps(qid))
        if not isinstance(item, dict):
            raise ScenetgError(f"{where}: expected an object")
        for key in ("movie", "sentence"):
            if key not in item:
                raise ScenetgError(f"{where}: no {key!r}")
        wkey = next((k for k in ("ext_timestamps", "timestamps") if k in item), None)
        if wkey is None:
            raise ScenetgError(f"{where}: no 'ext_timestamps' or 'timestamps'")
        dkey = "movie_duration" if "movie_duration" in item else "duration"
        duration = _optional_duration(item.get(dkey), where, dkey)
        windows = _windows(item[wkey], where, wkey)
        query = _text(item["sentence"], where, "sentence").strip()
        yield _Raw(str(qid), str(item["movie"]), duration, query, windows, where)


WINDOW_KEYS = ("relevant_windows", "windows", "timestamps")  # timestamps: GroundNLQ's JSONL
QID_KEYS = ("qid", "sample_id", "query_id")  # query_id: GroundNLQ's JSONL
SHARD_SPLIT = re.compile(r"^(?P<split>train|validation|test)-\d{5}-of-\d{5}\.parquet$")
"""A SceneTG data shard's name: the split its rows must carry."""
SCENETG_COLUMNS = ("sample_id", "video_id", "duration_s", "query", "start_s", "end_s")


def _read_scenetg(path: str, split: str | None, check_values: bool = False) -> Iterator[_Raw]:
    """SceneTG query rows (a build folder, its data/, one shard, or ``hub:ORG/NAME``);
    `check_values` first refuses rows `grounding.query_values` rejects (training reads with it;
    eval reads benchmark-style, clipping a GT end past the duration)."""
    p = Path(path)
    if path.startswith(HUB_PREFIX):
        yield from _read_hub(path[len(HUB_PREFIX):], split, check_values)
        return
    if not p.exists():
        raise ScenetgError(f"{path}: no such folder or Parquet file (a SceneTG build: run "
                           f"`scenetg build` / `make build` first){_hub_hint(path)}")
    if p.is_dir():
        folder = p / "data" if (p / "data").is_dir() else p
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise ScenetgError(
                f"{folder}: no Parquet files (expected a SceneTG build OUT/ or OUT/data)"
            )
    else:
        files = [p]
    import pyarrow.parquet as pq

    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise ScenetgError(f"{f}: not a readable Parquet file ({exc})") from None
        missing = [c for c in SCENETG_COLUMNS if c not in table.column_names]
        if missing:
            raise ScenetgError(
                f"{f}: missing columns {missing} (a SceneTG query file has {list(SCENETG_COLUMNS)})"
            )
        if check_values:
            shard = SHARD_SPLIT.match(f.name)
            _check_values(table.to_pydict(), str(f), shard["split"] if shard else None)
        if split is not None:
            if "split" in table.column_names:
                rows_split = table.column("split").to_pylist()
                table = table.filter([s == split for s in rows_split])
            elif not f.name.startswith(f"{split}-"):
                continue
        yield from _scenetg_rows(table.to_pydict(), str(f))


def _read_hub(repo_id: str, split: str | None, check_values: bool = False) -> Iterator[_Raw]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise ScenetgError("reading a Hub dataset needs the 'datasets' package") from None
    try:
        loaded = datasets.load_dataset(repo_id, split=split)
    except Exception as exc:
        raise ScenetgError(f"{repo_id}: cannot load the Hub dataset ({exc})") from None
    parts = [loaded] if split is not None else [loaded[name] for name in loaded]
    for part in parts:
        missing = [c for c in SCENETG_COLUMNS if c not in part.column_names]
        if missing:
            raise ScenetgError(f"{repo_id}: missing columns {missing}")
        if check_values:
            _check_values(part.to_dict(), repo_id)
        yield from _scenetg_rows(part.select_columns(list(SCENETG_COLUMNS)).to_dict(), repo_id)


def _check_values(cols: dict[str, list], source: str, shard_split: str | None = None) -> None:
    """ScenetgError listing the rows whose values `grounding.query_values` rejects (times,
    figures, split vs shard, video paths): the same check as `scenetg inspect` and `publish`."""
    n = len(next(iter(cols.values()), []))
    problems = [
        p for r in range(n)
        for p in query_row_problems({k: v[r] for k, v in cols.items()}, f"{source}: row {r}", shard_split)
    ]
    if problems:
        raise ScenetgError(f"{len(problems)} invalid value(s): {summarize_problems(problems)}")


def _scenetg_rows(cols: dict[str, list], source: str) -> Iterator[_Raw]:
    for r, (qid, vid, dur, query, start, end) in enumerate(
        zip(*(cols[c] for c in SCENETG_COLUMNS), strict=True)
    ):
        where = f"{source}: row {r}"
        if qid is None or vid is None:
            raise ScenetgError(f"{where}: null sample_id or video_id")
        window = (_number(start, where, "start_s"), _number(end, where, "end_s"))
        query = "" if query is None else _text(query, where, "query")
        duration = _optional_duration(dur, where, "duration_s")
        yield _Raw(str(qid), str(vid), duration, query.strip(), [window], where)
