"""The rows of a predictions file and what the grounding runs share: per-run counts
(`GroundStats`), queries grouped by video, the rows already done (resume: error rows retried), and
the error rows a missing or broken video gets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scenetg.atomic_files import write_bytes_atomic
from scenetg.errors import ScenetgError, VideoError
from scenetg.grounding.records import GroundingRecord
from scenetg.video.lookup import find_video, missing_video_message

METHODS = ("model", "center", "clip")
ERROR_PREFIX = "error:"


@dataclass
class GroundStats:
    """Counts of one `ground` run (the CLI prints `summary()`)."""

    method: str
    total: int = 0
    """Records considered (after `limit`)."""
    skipped: int = 0
    """Already in the predictions file (resume)."""
    written: int = 0
    parsed: int = 0
    """Rows written with a prediction."""
    invalid: int = 0
    """Rows written with pred null because the output could not be parsed."""
    missing_videos: int = 0
    """Queries whose video file was not found (pred null, raw "error: ...")."""
    video_errors: int = 0
    """Queries whose video could not be read (pred null, raw "error: ...")."""
    videos: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Queries written as error rows (video missing or unreadable); the CLI exits 3."""
        return self.missing_videos + self.video_errors

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        line = (
            f"{self.method}: {self.written} predictions written ({self.parsed} parsed, "
            f"{self.invalid} unparsable) from {self.videos} videos in {self.seconds:.1f} s"
        )
        if self.skipped:
            line += f"; {self.skipped} already done"
        if self.missing_videos:
            line += f"; {self.missing_videos} queries with no video file"
        if self.video_errors:
            line += f"; {self.video_errors} queries with an unreadable video"
        return line


def group_by_video(records: Iterable[Any]) -> dict[str, list[Any]]:
    """Records grouped by ``video_id``, videos in order of first appearance."""
    groups: dict[str, list[Any]] = {}
    for rec in records:
        groups.setdefault(rec.video_id, []).append(rec)
    return groups


# ------------------------------------------------------------------------------ output file


def read_done_rows(path: str | Path) -> dict[str, dict]:
    """qid (as a string) -> last row of an existing JSONL output, for resuming.

    A last line that is not valid JSON (a write torn by a kill) is cut from the file so the next
    append starts on a fresh line; a bad line elsewhere raises `ScenetgError("FILE:LINE: ...")`.
    A missing file gives ``{}``.
    """
    p = Path(path)
    if not p.is_file():
        return {}
    data = p.read_bytes()
    lines = data.split(b"\n")
    # Offsets of each line's start, to cut a torn tail.
    starts, pos = [], 0
    for raw in lines:
        starts.append(pos)
        pos += len(raw) + 1
    rows: dict[str, dict] = {}
    last_content = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or obj.get("qid") is None:
            if i == last_content:
                with p.open("r+b") as fh:
                    fh.truncate(starts[i])
                break
            raise ScenetgError(
                f"{p}:{i + 1}: not a JSON object with a 'qid'; fix the line or delete the file to start over"
            )
        rows[str(obj["qid"])] = obj
    if data and not data.endswith(b"\n") and p.stat().st_size == len(data):
        with p.open("ab") as fh:  # a complete last row that lost only its newline
            fh.write(b"\n")
    return rows


def is_error_row(row: dict, key: str = "raw") -> bool:
    value = row.get(key)
    return isinstance(value, str) and value.startswith(ERROR_PREFIX)


def resume_rows(out: Path) -> set[str]:
    """qids finished in `out`. Error rows (to be retried) are dropped from the file first, in one
    atomic rewrite, so a retried qid never appears twice (`read_predictions` refuses a qid with
    two different predictions)."""
    rows = read_done_rows(out)
    if not any(is_error_row(row) for row in rows.values()):
        return set(rows)
    keep = [line for line in out.read_bytes().splitlines(keepends=True)
            if line.strip() and not is_error_row(json.loads(line))]
    write_bytes_atomic(out, b"".join(keep))
    return {q for q, row in rows.items() if not is_error_row(row)}


Emit = Callable[..., None]


def find_video_or_error_rows(
    videos_dir: str | Path, video_id: str, recs: Sequence[GroundingRecord], emit: Emit
) -> Path | None:
    """The video's path, or None after writing an error row for each of its queries."""
    try:
        path = find_video(videos_dir, video_id)
    except VideoError as exc:
        for rec in recs:
            emit(rec, None, f"{ERROR_PREFIX} {exc}", "error")
        return None
    if path is None:
        message = f"{ERROR_PREFIX} {missing_video_message(videos_dir, video_id)}"
        for rec in recs:
            emit(rec, None, message, "missing")
    return path


def error_rows_for(recs: Sequence[GroundingRecord], exc: Exception, emit: Emit) -> None:
    for rec in recs:
        emit(rec, None, f"{ERROR_PREFIX} {exc}", "error")
