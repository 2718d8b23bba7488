"""Multiple-choice long-video QA files (Video-MME, LongVideoBench, MLVU; JSON, JSONL or Parquet)
read into `QARecord`s for `scenetg answer`."""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.errors import ScenetgError
from scenetg.grounding.annotation_formats import read_utf8

QA_FORMATS = ("videomme", "longvideobench", "mlvu")
DURATION_GROUPS = ("short", "medium", "long")
DURATION_GROUP_EDGES_S = (240.0, 900.0)
"""Seconds-to-group edges, following Video-MME's groups (short < 2 min, medium 4–15 min,
long 30–60 min) with the gaps closed: short < 4 min <= medium <= 15 min < long."""
UNKNOWN_GROUP = "unknown"
NO_ANSWER = -1
"""`answer_index` of an item whose answer is not among its options (MLVU's `2_needle.json` has
two): kept and scored wrong, as MLVU's own `choice_bench.py` scores it."""


@dataclass
class QARecord:
    """One multiple-choice question about video `video_id`; `options` are plain texts (no
    letters), `answer_index` 0-based (`NO_ANSWER` when the file's answer is not among the
    options: no choice matches it). `duration_group` is short/medium/long (or the file's own
    group label, or "unknown"); `duration_s` the file's duration when it gives one."""

    qid: str
    video_id: str
    question: str
    options: list[str]
    answer_index: int
    duration_group: str
    duration_s: float | None = None


@dataclass
class QALoadReport:
    """What `load_qa_report` kept that cannot be answered right, for one warning line."""

    path: str
    n_records: int = 0
    no_answer: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.path}: {self.no_answer} of {self.n_records} questions have an answer that is "
            "not among their options; kept and scored wrong"
        )
        return text + "".join(f" (e.g. {e})" for e in self.examples[:2])


# ----------------------------------------------------------------------------------- loaders


def duration_group(duration_s: float | None) -> str:
    """short / medium / long from seconds (`DURATION_GROUP_EDGES_S`); "unknown" for None."""
    if duration_s is None:
        return UNKNOWN_GROUP
    if duration_s < DURATION_GROUP_EDGES_S[0]:
        return "short"
    if duration_s <= DURATION_GROUP_EDGES_S[1]:
        return "medium"
    return "long"


def _read_items(p: Path) -> list[tuple[str, dict]]:
    """``(where, object)`` for each item of a JSON list, JSONL file or Parquet table."""
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
        return [(f"{p}: row {i}", r) for i, r in enumerate(rows)]

    text = read_utf8(p)
    stripped = text.lstrip()
    if suffix == ".jsonl" or (suffix != ".json" and stripped.startswith("{") and "\n{" in stripped):
        items = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ScenetgError(f"{p}:{line_no}: invalid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise ScenetgError(f"{p}:{line_no}: expected a JSON object")
            items.append((f"{p}:{line_no}", obj))
        return items
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ScenetgError(f"{p}: invalid JSON ({exc})") from None
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ScenetgError(f"{p}: expected a list of questions (or an object holding one list)")
        doc = lists[0]
    if not isinstance(doc, list) or not all(isinstance(x, dict) for x in doc):
        raise ScenetgError(f"{p}: expected a list of JSON objects")
    return [(f"{p}: item {i}", obj) for i, obj in enumerate(doc)]


def detect_qa_format(item: dict) -> str:
    """videomme: has `options` (or nested `questions`); longvideobench: `correct_choice`;
    mlvu: `candidates` with `video_name` or `video`."""
    if "correct_choice" in item:
        return "longvideobench"
    if "options" in item or isinstance(item.get("questions"), list):
        return "videomme"
    if "candidates" in item and ("video_name" in item or "video" in item):
        return "mlvu"
    raise ScenetgError(
        "cannot tell the QA format from the fields "
        f"{sorted(item)[:12]}; pass a format ({', '.join(QA_FORMATS)})"
    )


def load_qa(path: str | Path, format: str = "auto") -> list[QARecord]:
    """`load_qa_report`'s records; a Python warning when some cannot be answered right."""
    records, report = load_qa_report(path, format)
    if report.no_answer:
        warnings.warn(report.summary(), stacklevel=2)
    return records


def load_qa_report(path: str | Path, format: str = "auto") -> tuple[list[QARecord], QALoadReport]:
    """Read a Video-MME, LongVideoBench or MLVU file (JSON list, JSONL or Parquet).

    - ``videomme``: rows ``video_id, duration (short|medium|long), question, options, answer``
      (letter), optional ``question_id`` and ``videoID``; or video objects with a ``questions``
      list. The video file is ``videoID`` when present (the YouTube id the released files are
      named by), else ``video_id``. Options ``"A. text"`` lose their letter. qid: ``question_id``
      else ``"{video_id}-{k}"`` (k-th question of the video, from 1).
    - ``longvideobench``: ``video_id, question, option0..option4`` (trailing empty / "N/A"
      options dropped) or ``candidates``, ``correct_choice`` (index or letter), ``duration`` (s).
      qid: ``id`` else ``"{video_id}_{i}"`` (i: position in the file).
    - ``mlvu``: ``video_name`` (or ``video``, extension dropped), ``question``, ``candidates``,
      ``answer`` (the option's text; a letter also works), ``duration`` (s). qid: ``question_id``
      else ``"{video}_{i}"``. An answer that is none of the candidates keeps the item with
      ``NO_ANSWER`` (scored wrong, counted in the report), as MLVU's ``choice_bench.py`` does.

    Group: Video-MME's own label; otherwise from the duration in seconds (`duration_group`).
    Raises `ScenetgError("FILE: where: reason")` on malformed input or duplicate qids.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenetgError(f"{path}: QA file not found")
    report = QALoadReport(str(path))
    items = _read_items(p)
    if not items:
        return [], report
    fmt = format.strip().lower().replace("-", "").replace("_", "") if format else "auto"
    fmt = {
        "auto": "auto",
        "videomme": "videomme",
        "longvideobench": "longvideobench",
        "lvb": "longvideobench",
        "mlvu": "mlvu",
    }.get(fmt, fmt)
    if fmt == "auto":
        fmt = detect_qa_format(items[0][1])
    if fmt not in QA_FORMATS:
        raise ScenetgError(
            f"unknown QA format {format!r}; use auto or one of {', '.join(QA_FORMATS)}"
        )
    reader = {"videomme": _videomme, "longvideobench": _longvideobench, "mlvu": _mlvu}[fmt]
    records: list[QARecord] = []
    for i, (where, item) in enumerate(items):
        try:
            got = reader(item, i)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            why = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ScenetgError(f"{where}: {why}") from None
        for rec in got:
            if rec.answer_index == NO_ANSWER:
                report.no_answer += 1
                report.examples.append(f"{where}: answer {item.get('answer')!r}")
        records.extend(got)
    seen: set[str] = set()
    for rec in records:
        if rec.qid in seen:
            raise ScenetgError(f"{path}: duplicate question id {rec.qid!r}")
        seen.add(rec.qid)
    report.n_records = len(records)
    return records, report


_LETTER_PREFIX = re.compile(r"^\s*\(?([A-Za-z])[.):]\s*")


def _strip_letters(options: Sequence[Any]) -> list[str]:
    """Drop ``A. `` / ``(A) `` prefixes when every option carries its own letter in order."""
    texts = [str(o).strip() for o in options]
    matches = [_LETTER_PREFIX.match(t) for t in texts]
    if texts and all(m and m.group(1).upper() == chr(65 + i) for i, m in enumerate(matches)):
        return [t[m.end() :].strip() for t, m in zip(texts, matches, strict=True)]  # type: ignore[union-attr]
    return texts


def _index_of(answer: Any, options: list[str]) -> int:
    """A 0-based index from an int, a letter or the option's text."""
    if isinstance(answer, bool):
        raise ValueError(f"invalid answer {answer!r}")
    if isinstance(answer, (int, np.integer)):
        idx = int(answer)
    else:
        text = str(answer).strip()
        exact = [i for i, o in enumerate(options) if o == text]
        loose = [i for i, o in enumerate(options) if o.strip().lower() == text.lower()]
        if exact or loose:
            idx = (exact or loose)[0]
        elif re.fullmatch(r"\(?[A-Za-z][.)]?", text):
            idx = ord(text.strip("().").upper()) - 65
        elif text.isdigit():
            idx = int(text)
        else:
            idx = -1
        if not 0 <= idx < len(options):
            raise ValueError(
                f"answer {text!r} is not one of the {len(options)} options (text, letter or index)"
            )
    if not 0 <= idx < len(options):
        raise ValueError(f"answer {answer!r} out of range for {len(options)} options")
    return idx


def _options(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("options must be a non-empty list")
    return _strip_letters(value)


def _seconds(value: Any) -> float | None:
    try:
        d = float(value)
    except (TypeError, ValueError):
        return None
    return d if math.isfinite(d) and d > 0 else None


def _videomme(item: dict, i: int) -> list[QARecord]:
    video_id = str(item.get("videoID") or item["video_id"])
    label = item.get("duration")
    questions = item["questions"] if isinstance(item.get("questions"), list) else [item]
    out = []
    for k, q in enumerate(questions, start=1):
        options = _options(q["options"])
        raw_group = q.get("duration", label)
        if isinstance(raw_group, str) and raw_group.strip().lower() in DURATION_GROUPS:
            group, seconds = raw_group.strip().lower(), None
        else:
            seconds = _seconds(raw_group)
            group = duration_group(seconds)
        qid = q.get("question_id")
        out.append(
            QARecord(
                qid=str(qid) if qid is not None else f"{item.get('video_id', video_id)}-{k}",
                video_id=video_id,
                question=str(q["question"]).strip(),
                options=options,
                answer_index=_index_of(q["answer"], options),
                duration_group=group,
                duration_s=seconds,
            )
        )
    return out


_EMPTY_OPTIONS = {"", "n/a", "none", "null"}


def _longvideobench(item: dict, i: int) -> list[QARecord]:
    if isinstance(item.get("candidates"), list):
        raw = list(item["candidates"])
    else:
        raw = [item.get(f"option{j}") for j in range(5)]
        while raw and (raw[-1] is None or str(raw[-1]).strip().lower() in _EMPTY_OPTIONS):
            raw.pop()
    options = _options(raw)
    video_id = str(item["video_id"])
    seconds = _seconds(item.get("duration"))
    group = duration_group(seconds)
    if seconds is None and item.get("duration_group") is not None:
        group = f"<={item['duration_group']}s"  # LongVideoBench's own bucket (upper bound, s)
    qid = item.get("id")
    return [
        QARecord(
            qid=str(qid) if qid is not None else f"{video_id}_{i}",
            video_id=video_id,
            question=str(item["question"]).strip(),
            options=options,
            answer_index=_index_of(item["correct_choice"], options),
            duration_group=group,
            duration_s=seconds,
        )
    ]


def _mlvu(item: dict, i: int) -> list[QARecord]:
    name = str(item.get("video_name") or item["video"])
    stem, ext = os.path.splitext(name)
    video_id = stem if ext.lower() in (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v") else name
    options = _options(item["candidates"])
    seconds = _seconds(item.get("duration"))
    qid = item.get("question_id")
    try:
        answer_index = _index_of(item["answer"], options)
    except ValueError:  # not among the candidates: MLVU's choice_bench.py scores it wrong
        answer_index = NO_ANSWER
    return [
        QARecord(
            qid=str(qid) if qid is not None else f"{video_id}_{i}",
            video_id=video_id,
            question=str(item["question"]).strip(),
            options=options,
            answer_index=answer_index,
            duration_group=duration_group(seconds),
            duration_s=seconds,
        )
    ]
