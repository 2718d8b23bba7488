"""The common grounding record every benchmark loader produces, and the load report."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_REPORT_EXAMPLES = 5


@dataclass
class GroundingRecord:
    """One grounding query: find `query` in video `video_id`; `windows` are the GT spans (s).

    `qid` is what a predictions file refers to. `duration_s` is None when no file, metadata CSV or
    probe gave it (then nothing is clipped to it and the metrics put the query in bucket "unknown").
    `windows` are clipped to [0, duration_s] (SceneTG's default; a window can be empty after
    that: it is kept and scores IoU 0); `raw_windows` are the windows as the file wrote them when
    clipping changed any (None: the same as `windows`), for protocols that score unclipped GT.
    """

    qid: str
    video_id: str
    duration_s: float | None
    query: str
    windows: list[tuple[float, float]]
    raw_windows: list[tuple[float, float]] | None = None


@dataclass
class LoadReport:
    """What a loader changed or skipped; the caller prints `summary()` once.

    Rules, applied to each GT window in this order: start < 0 is clipped to 0, and an end after
    the video's duration is clipped to it (both counted in `windows_clipped`; an end past the
    duration by less than 1e-6 s is float noise, set to the duration without counting); a window
    with start >= end after clipping is kept (it scores IoU 0, as in every benchmark script) and
    counted in `windows_degenerate`; `records_degenerate` counts queries with no window of
    positive length. No query leaves the denominator for its window. Queries with no text are
    skipped (`records_skipped`), unless the loader is asked to keep them (`keep_no_text`: the
    Ego4D-NLQ script scores them): then those with a readable window are kept and counted in
    `records_no_text`.
    """

    path: str
    format: str
    n_records: int = 0
    windows_clipped: int = 0
    windows_degenerate: int = 0
    records_degenerate: int = 0
    records_skipped: int = 0
    records_no_text: int = 0
    missing_duration: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, where: str, what: str) -> None:
        """Keep the first few offending places, for the summary."""
        if len(self.examples) < MAX_REPORT_EXAMPLES:
            self.examples.append(f"{where}: {what}")

    @property
    def has_issues(self) -> bool:
        return bool(
            self.windows_clipped
            or self.windows_degenerate
            or self.records_skipped
            or self.records_no_text
            or self.missing_duration
        )

    def summary(self) -> str:
        """One line: the count of queries and of every fix; examples follow on their own lines."""
        parts = [f"{self.path} ({self.format}): {self.n_records} queries"]
        if self.windows_clipped:
            parts.append(f"{self.windows_clipped} GT windows clipped to the video duration")
        if self.windows_degenerate:
            parts.append(
                f"{self.windows_degenerate} GT windows of zero length (start >= end) kept; "
                f"{self.records_degenerate} queries have no other window and score IoU 0"
            )
        if self.records_skipped:
            parts.append(f"{self.records_skipped} queries skipped (no query text)")
        if self.records_no_text:
            parts.append(f"{self.records_no_text} queries with no text kept (scored when predicted)")
        if self.missing_duration:
            parts.append(
                f"{self.missing_duration} queries with unknown video duration "
                "(pass a metadata CSV or the videos folder)"
            )
        text = "; ".join(parts)
        if self.examples:
            text += "".join(f"\n  e.g. {e}" for e in self.examples)
        return text
