"""One chunk of `scenetg answer`: both stages (ground, then answer from the grounded span) and
the uniform baseline for the questions of a few videos, batched across them, and the rows they
write (`AnswerJob`); the local loop and the Ray actors both run it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetg.errors import VideoError
from scenetg.eval.answer_summary import format_answer_summary, summarize_answers  # noqa: F401
from scenetg.eval.baselines import (
    clip_frame_embeddings,
    clip_frame_times,
    clip_ground_video,
)
from scenetg.eval.ground_rows import ERROR_PREFIX
from scenetg.eval.qa_loaders import (  # noqa: F401 - re-exported: `answer` callers load QA here
    DURATION_GROUPS,
    QA_FORMATS,
    QARecord,
    duration_group,
    load_qa,
)
from scenetg.grounding.parsing import parse_answer, parse_choice
from scenetg.grounding.prompts import (
    mcq_prompt,
    span_times,
)
from scenetg.grounding.samples import (
    FrameSampling,
    GroundingInput,
    SampledVideo,
    generate_grounding,
    generate_texts,
)
from scenetg.models.batch_size import runner_batch_size
from scenetg.video.frames import read_frames_at
from scenetg.video.lookup import find_video, missing_video_message
from scenetg.video.probe import probe_video

GROUNDERS = ("model", "clip")

DEFAULT_N_FRAMES = 16
DEFAULT_CONTEXT_FRACTION = 0.5
"""The grounded span is widened on each side by this fraction of its own length..."""
DEFAULT_CONTEXT_S = 0.0
"""...plus this many seconds, then clipped to the video."""
DEFAULT_ANSWER_TOKENS = 32


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


ANSWER_CHUNK_ITEMS = 32
"""Questions gathered (over consecutive videos) before their batches run: batches span videos
while the frames held stay bounded (one chunk's videos)."""


@dataclass
class VideoQuestions:
    """One video's questions with the frames both stages need (decoded once)."""

    path: Path
    recs: Sequence[QARecord]
    duration: float
    uniform: SampledVideo
    ground_video: SampledVideo | None = None
    spans: list | None = None
    raw_ground: list[str] | None = None


@dataclass
class AnswerJob:
    """One `answer` run's settings and loaded models; `chunk_rows` does consecutive videos,
    batching their grounding and answering items across videos."""

    runner: Any
    ground_engine: Any
    grounder: str
    n_frames: int
    context_fraction: float
    context_s: float
    fps: float
    max_frames: int
    batch_size: int | str
    max_side: int | None
    max_new_tokens_ground: int
    max_new_tokens_answer: int
    clip_scales: tuple[float, ...]
    clip_stride: float

    def prepare(self, videos_dir, video_id: str, recs: Sequence[QARecord]) -> VideoQuestions | list[dict]:
        """The video's frames (and its CLIP grounding), or one error row per question."""
        try:
            path = find_video(videos_dir, video_id)
            if path is None:
                message = f"{ERROR_PREFIX} {missing_video_message(videos_dir, video_id)}"
                return [answer_error_row(r, message) for r in recs]
            return self._decode(path, recs)
        except VideoError as exc:
            return [answer_error_row(r, f"{ERROR_PREFIX} {exc}") for r in recs]

    def _batched(self, items: list, frames_of, fn) -> list:
        """`fn` over `items` in batches (``auto``: sized by each batch's first item's frames)."""
        out: list = []
        i = 0
        while i < len(items):
            size = runner_batch_size(self.runner, self.batch_size, frames_of(items[i]))
            out.extend(fn(items[i : i + size]))
            i += size
        return out

    def _decode(self, path: Path, recs: Sequence[QARecord]) -> VideoQuestions:

        duration = float(probe_video(path).duration_s)
        # Frames for the model start at each span's start (`span_times`), as grounding's do.
        uniform_times = span_times(0.0, duration, self.n_frames)
        if self.grounder == "clip":
            emb = clip_frame_embeddings(
                self.ground_engine, path, clip_frame_times(duration, self.fps, self.max_frames)
            )
            found = clip_ground_video(
                self.ground_engine, emb, duration, [r.question for r in recs],
                self.clip_scales, self.clip_stride,
            )
            uniform_frames = read_frames_at(path, uniform_times, max_side=self.max_side)
            return VideoQuestions(
                path, recs, duration, SampledVideo(uniform_frames, uniform_times, duration),
                spans=[(s, e) for s, e, _ in found],
                raw_ground=[f"clip window score={score:.4f}" for _, _, score in found],
            )
        times_g = FrameSampling(self.fps, self.max_frames, self.max_side).times(duration)
        frames = read_frames_at(path, list(times_g) + list(uniform_times), self.max_side)
        return VideoQuestions(
            path, recs, duration,
            SampledVideo(frames[len(times_g) :], uniform_times, duration),
            ground_video=SampledVideo(frames[: len(times_g)], times_g, duration),
        )

    def chunk_rows(self, videos: list[VideoQuestions]) -> list[dict]:
        """Rows for every question of `videos` (in their order); items batched across videos."""
        # Stage 1: ground every question (model grounder; CLIP grounded at decode time).
        items = [(v, GroundingInput(v.ground_video, r.question))
                 for v in videos if v.spans is None for r in v.recs]
        raw = self._batched(
            items, lambda it: it[1].video.frames,
            lambda b: generate_grounding(
                self.ground_engine, [g for _, g in b], self.max_new_tokens_ground),
        )
        for v in videos:
            if v.spans is None:
                v.raw_ground = raw[: len(v.recs)]
                raw = raw[len(v.recs) :]
                v.spans = [parse_answer(t) for t in v.raw_ground]
                v.ground_video = None  # its frames are no longer needed
        # Stage 2: frames inside each widened span (whole video when grounding is unusable).
        answer_items: list[tuple[SampledVideo, str]] = []
        windows_of = []
        for v in videos:
            windows = [answer_window(s, v.duration, self.context_fraction, self.context_s)
                       for s in v.spans]
            used = [w if w is not None else (0.0, v.duration) for w in windows]
            times_q = [span_times(a, b, self.n_frames) for a, b in used]
            flat = read_frames_at(v.path, [t for ts in times_q for t in ts], self.max_side)
            n = self.n_frames
            for k, (rec, (a, b)) in enumerate(zip(v.recs, used, strict=True)):
                prompt = mcq_prompt(rec.question, rec.options)
                answer_items.append((SampledVideo(flat[k * n : (k + 1) * n], times_q[k], b - a), prompt))
                answer_items.append((v.uniform, prompt))
            windows_of.append((windows, used))
        texts = self._batched(
            answer_items, lambda it: it[0].frames,
            lambda b: generate_texts(
                self.runner, [v for v, _ in b], [p for _, p in b], self.max_new_tokens_answer
            ),
        )
        rows = []
        for v, (windows, used) in zip(videos, windows_of, strict=True):
            for k, rec in enumerate(v.recs):
                raw_gta, raw_uni = texts[0], texts[1]
                texts = texts[2:]
                rows.append(answer_row(rec, v, k, windows, used, raw_gta, raw_uni))
        return rows


def answer_row(rec: QARecord, v: VideoQuestions, k: int, windows, used, raw_gta: str, raw_uni: str) -> dict:
    n_opt = len(rec.options)
    choice_gta = parse_choice(raw_gta, n_opt, rec.options)
    choice_uni = parse_choice(raw_uni, n_opt, rec.options)
    span = v.spans[k]
    return {
        "qid": rec.qid,
        "video_id": rec.video_id,
        "duration_group": rec.duration_group,
        "answer_index": rec.answer_index,
        "duration_s": v.duration,
        "span": None if span is None else [float(span[0]), float(span[1])],
        "window": [float(used[k][0]), float(used[k][1])],
        "fallback": windows[k] is None,
        "choice_gta": choice_gta,
        "correct_gta": choice_gta == rec.answer_index,
        "choice_uniform": choice_uni,
        "correct_uniform": choice_uni == rec.answer_index,
        "raw_ground": v.raw_ground[k],
        "raw_gta": raw_gta,
        "raw_uniform": raw_uni,
        "error": None,
    }


def answer_chunks(job: AnswerJob, videos_dir, order) -> Iterator[list[dict] | list[VideoQuestions]]:
    """Error rows of a bad video at once; else prepared videos in chunks of about
    `ANSWER_CHUNK_ITEMS` questions."""
    chunk: list[VideoQuestions] = []
    for video_id, recs in order:
        prepared = job.prepare(videos_dir, video_id, recs)
        if isinstance(prepared, list):
            yield prepared
            continue
        chunk.append(prepared)
        if sum(len(v.recs) for v in chunk) >= ANSWER_CHUNK_ITEMS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def answer_error_row(rec: QARecord, message: str) -> dict:
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
