"""Ground-then-Answer (`scenetg answer`): multiple-choice long-video QA through a grounded span.

For each question, stage 1 grounds the question in the video (an MLLM with the training prompt, or
the CLIP sliding-window grounder of `scenetg.eval.grounding`); stage 2 shows the answerer N frames
sampled inside the grounded span widened by some context. The baseline shows the same answerer N
frames sampled uniformly over the whole video. Same answerer, prompt (`mcq_prompt`), greedy
decoding and parser (`parse_choice`) for both, so the only difference is where the frames are from.

Loaders read Video-MME, LongVideoBench and MLVU files (JSON, JSONL or Parquet) into `QARecord`s.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.build.workdir import write_bytes_atomic
from scenetg.errors import ConfigError, ScenetgError, VideoError
from scenetg.eval.grounding import (
    CLIP_SCALES,
    CLIP_STRIDE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    ERROR_PREFIX,
    as_clip,
    as_runner,
    clip_frame_embeddings,
    clip_ground_video,
    find_video,
    group_by_video,
    missing_video_message,
    model_ground_batch,
    read_done_rows,
    read_frames,
)
from scenetg.progress import Reporter
from scenetg.rl.parsing import parse_answer, parse_choice
from scenetg.rl.prompts import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
    mcq_prompt,
    sample_video_times,
)
from scenetg.video.frames import sample_times

QA_FORMATS = ("videomme", "longvideobench", "mlvu")
GROUNDERS = ("model", "clip")
DURATION_GROUPS = ("short", "medium", "long")
DURATION_GROUP_EDGES_S = (240.0, 900.0)
"""Seconds-to-group edges, following Video-MME's groups (short < 2 min, medium 4–15 min,
long 30–60 min) with the gaps closed: short < 4 min <= medium <= 15 min < long."""
UNKNOWN_GROUP = "unknown"

DEFAULT_N_FRAMES = 16
DEFAULT_CONTEXT_FRACTION = 0.5
"""The grounded span is widened on each side by this fraction of its own length..."""
DEFAULT_CONTEXT_S = 0.0
"""...plus this many seconds, then clipped to the video."""
DEFAULT_ANSWER_TOKENS = 32


@dataclass
class QARecord:
    """One multiple-choice question about video `video_id`; `options` are plain texts (no
    letters), `answer_index` 0-based. `duration_group` is short/medium/long (or the file's own
    group label, or "unknown"); `duration_s` the file's duration when it gives one."""

    qid: str
    video_id: str
    question: str
    options: list[str]
    answer_index: int
    duration_group: str
    duration_s: float | None = None


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
    text = p.read_text(encoding="utf-8")
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
      else ``"{video}_{i}"``.

    Group: Video-MME's own label; otherwise from the duration in seconds (`duration_group`).
    Raises `ScenetgError("FILE: where: reason")` on malformed input or duplicate qids.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenetgError(f"{path}: QA file not found")
    items = _read_items(p)
    if not items:
        return []
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
            records.extend(reader(item, i))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            why = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ScenetgError(f"{where}: {why}") from None
    seen: set[str] = set()
    for rec in records:
        if rec.qid in seen:
            raise ScenetgError(f"{path}: duplicate question id {rec.qid!r}")
        seen.add(rec.qid)
    return records


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
    return [
        QARecord(
            qid=str(qid) if qid is not None else f"{video_id}_{i}",
            video_id=video_id,
            question=str(item["question"]).strip(),
            options=options,
            answer_index=_index_of(item["answer"], options),
            duration_group=duration_group(seconds),
            duration_s=seconds,
        )
    ]


# ---------------------------------------------------------------------------------- windows


def answer_window(
    span: tuple[float, float] | None,
    duration_s: float,
    context_fraction: float = DEFAULT_CONTEXT_FRACTION,
    context_s: float = DEFAULT_CONTEXT_S,
) -> tuple[float, float] | None:
    """The span the answerer's frames come from, or None when the grounding is unusable.

    The span is clipped to ``[0, D]``; when empty after that (unparsable, ``start >= end``, all
    outside the video) the result is None and the caller falls back to the whole video. Else it
    is widened on each side by ``context_fraction · length + context_s`` and clipped again.
    """
    if span is None:
        return None
    s, e = (min(max(float(x), 0.0), duration_s) for x in span)
    if not (math.isfinite(s) and math.isfinite(e)) or e <= s:
        return None
    pad = context_fraction * (e - s) + context_s
    return max(0.0, s - pad), min(duration_s, e + pad)


# ------------------------------------------------------------------------------------ answer


def answer(
    records: Sequence[QARecord],
    videos_dir: str | Path,
    out_path: str | Path,
    answerer: Any,
    grounder: str = "model",
    grounder_model: Any = None,
    n_frames: int = DEFAULT_N_FRAMES,
    context_fraction: float = DEFAULT_CONTEXT_FRACTION,
    context_s: float = DEFAULT_CONTEXT_S,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    reporter: Reporter | None = None,
    *,
    dtype: str = "auto",
    device: str = "auto",
    max_new_tokens_ground: int = DEFAULT_MAX_NEW_TOKENS,
    max_new_tokens_answer: int = DEFAULT_ANSWER_TOKENS,
    max_side: int | None = DEFAULT_MAX_SIDE,
    clip_scales: Sequence[float] = CLIP_SCALES,
    clip_stride: float = CLIP_STRIDE,
    summary_path: str | Path | None = None,
) -> dict:
    """Run Ground-then-Answer and the uniform baseline on `records` (the first `limit`).

    `answerer` is an MLLM id/path (or a loaded `QwenRunner`). `grounder` is ``model`` (the
    MLLM `grounder_model`, default the answerer, with the grounding prompt at `fps` /
    `max_frames`) or ``clip`` (`grounder_model` an OpenCLIP name/path, frames at `fps`). Both
    arms see `n_frames` frames. Appends one row per question to `out_path` (resumable like
    `ground`: done qids skipped, error rows retried) and writes the summary JSON to
    `summary_path` (default ``<out_path stem>.summary.json``); returns the summary.
    """
    if grounder not in GROUNDERS:
        raise ConfigError(f"unknown grounder {grounder!r}; use one of {', '.join(GROUNDERS)}")
    if n_frames < 1 or batch_size < 1 or fps <= 0 or max_frames < 1:
        raise ConfigError("n_frames, batch_size and max_frames must be >= 1, fps > 0")
    if context_fraction < 0 or context_s < 0:
        raise ConfigError("context_fraction and context_s must be >= 0")
    if limit is not None and limit < 0:
        raise ConfigError("limit must be >= 0")
    t0 = time.perf_counter()
    reporter = reporter or Reporter()
    todo = list(records)[: limit if limit is not None else None]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {q for q, row in read_done_rows(out).items() if not row.get("error")}
    pending = [r for r in todo if str(r.qid) not in done]

    settings = {
        "grounder": grounder,
        "n_frames": int(n_frames),
        "context_fraction": float(context_fraction),
        "context_s": float(context_s),
        "fps": float(fps),
        "max_frames": int(max_frames),
    }
    if pending:
        runner = as_runner(answerer, dtype, device, max_new_tokens_ground, "the answerer model")
        if grounder == "clip":
            ground_engine = as_clip(grounder_model, device, "the CLIP grounder model")
        elif grounder_model is None or grounder_model == answerer:
            ground_engine = runner
        else:
            ground_engine = as_runner(grounder_model, dtype, device, max_new_tokens_ground)
        job = _Job(
            runner=runner,
            ground_engine=ground_engine,
            grounder=grounder,
            n_frames=int(n_frames),
            context_fraction=float(context_fraction),
            context_s=float(context_s),
            fps=float(fps),
            max_frames=int(max_frames),
            batch_size=int(batch_size),
            max_side=max_side,
            max_new_tokens_ground=int(max_new_tokens_ground),
            max_new_tokens_answer=int(max_new_tokens_answer),
            clip_scales=tuple(clip_scales),
            clip_stride=float(clip_stride),
        )
        reporter.start("answer", len(pending))
        with out.open("a", encoding="utf-8") as fh:
            for video_id, recs in group_by_video(pending).items():
                for row in job.video_rows(videos_dir, video_id, recs):
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    fh.flush()
                    reporter.advance("answer")
    rows = read_done_rows(out)
    summary = summarize_answers(todo, rows)
    summary.update(settings)
    summary["skipped"] = len(todo) - len(pending)
    summary["seconds"] = time.perf_counter() - t0
    target = (
        Path(summary_path)
        if summary_path is not None
        else out.with_name(out.stem + ".summary.json")
    )
    write_bytes_atomic(target, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    summary["summary_path"] = str(target)
    return summary


@dataclass
class _Job:
    """One `answer` run's settings and loaded models; `video_rows` does one video."""

    runner: Any
    ground_engine: Any
    grounder: str
    n_frames: int
    context_fraction: float
    context_s: float
    fps: float
    max_frames: int
    batch_size: int
    max_side: int | None
    max_new_tokens_ground: int
    max_new_tokens_answer: int
    clip_scales: tuple[float, ...]
    clip_stride: float

    def video_rows(self, videos_dir, video_id: str, recs: Sequence[QARecord]) -> list[dict]:
        path = find_video(videos_dir, video_id)
        if path is None:
            return [_error_row(r, missing_video_message(videos_dir, video_id)) for r in recs]
        try:
            return self._rows(path, recs)
        except VideoError as exc:
            return [_error_row(r, f"{ERROR_PREFIX} {exc}") for r in recs]

    def _batched(self, items: list, fn) -> list:
        out: list = []
        for i in range(0, len(items), self.batch_size):
            out.extend(fn(items[i : i + self.batch_size]))
        return out

    def _rows(self, path: Path, recs: Sequence[QARecord]) -> list[dict]:
        from scenetg.video.probe import probe_video

        duration = float(probe_video(path).duration_s)
        uniform_times = sample_times(0.0, duration, self.n_frames)

        # Stage 1: ground every question of the video (frames decoded once).
        if self.grounder == "clip":
            times_g = sample_video_times(duration, self.fps, self.max_frames, multiple_of=1)
            emb = clip_frame_embeddings(self.ground_engine, path, times_g)
            found = clip_ground_video(
                self.ground_engine,
                emb,
                duration,
                [r.question for r in recs],
                self.clip_scales,
                self.clip_stride,
            )
            spans = [(s, e) for s, e, _ in found]
            raw_ground = [f"clip window score={score:.4f}" for _, _, score in found]
            uniform_frames = read_frames(path, uniform_times, self.max_side)
        else:
            times_g = sample_video_times(duration, self.fps, self.max_frames)
            frames = read_frames(path, list(times_g) + list(uniform_times), self.max_side)
            frames_g, uniform_frames = frames[: len(times_g)], frames[len(times_g) :]
            items = [(frames_g, times_g, duration, r.question) for r in recs]
            raw_ground = self._batched(
                items,
                lambda b: model_ground_batch(self.ground_engine, b, self.max_new_tokens_ground),
            )
            spans = [parse_answer(t) for t in raw_ground]
            del frames, frames_g

        # Stage 2: frames inside each widened span (whole video when grounding is unusable).
        windows = [answer_window(s, duration, self.context_fraction, self.context_s) for s in spans]
        used = [w if w is not None else (0.0, duration) for w in windows]
        span_times = [sample_times(a, b, self.n_frames) for a, b in used]
        flat = read_frames(path, [t for ts in span_times for t in ts], self.max_side)
        span_frames = [flat[i * self.n_frames : (i + 1) * self.n_frames] for i in range(len(recs))]

        answer_items = []
        for rec, (a, b), times, frames_q in zip(recs, used, span_times, span_frames, strict=True):
            prompt = mcq_prompt(rec.question, rec.options)
            answer_items.append((frames_q, times, b - a, prompt))
            answer_items.append((uniform_frames, uniform_times, duration, prompt))
        texts = self._batched(
            answer_items,
            lambda b: self.runner.generate(
                [it[0] for it in b],
                [it[1] for it in b],
                [it[3] for it in b],
                [it[2] for it in b],
                max_new_tokens=self.max_new_tokens_answer,
            ),
        )
        rows = []
        for k, rec in enumerate(recs):
            raw_gta, raw_uni = texts[2 * k], texts[2 * k + 1]
            n = len(rec.options)
            choice_gta = parse_choice(raw_gta, n, rec.options)
            choice_uni = parse_choice(raw_uni, n, rec.options)
            span = spans[k]
            rows.append(
                {
                    "qid": rec.qid,
                    "video_id": rec.video_id,
                    "duration_group": rec.duration_group,
                    "answer_index": rec.answer_index,
                    "duration_s": duration,
                    "span": None if span is None else [float(span[0]), float(span[1])],
                    "window": [float(used[k][0]), float(used[k][1])],
                    "fallback": windows[k] is None,
                    "choice_gta": choice_gta,
                    "correct_gta": choice_gta == rec.answer_index,
                    "choice_uniform": choice_uni,
                    "correct_uniform": choice_uni == rec.answer_index,
                    "raw_ground": raw_ground[k],
                    "raw_gta": raw_gta,
                    "raw_uniform": raw_uni,
                    "error": None,
                }
            )
        return rows


def _error_row(rec: QARecord, message: str) -> dict:
    return {
        "qid": rec.qid,
        "video_id": rec.video_id,
        "duration_group": rec.duration_group,
        "answer_index": rec.answer_index,
        "duration_s": None,
        "span": None,
        "window": None,
        "fallback": False,
        "choice_gta": None,
        "correct_gta": False,
        "choice_uniform": None,
        "correct_uniform": False,
        "raw_ground": None,
        "raw_gta": None,
        "raw_uniform": None,
        "error": message,
    }


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
