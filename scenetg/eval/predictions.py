"""Predictions files: JSONL, one `{"qid": ..., "pred": [start_s, end_s] | null, "raw": "..."}`
per query (the contract `scenetg ground` writes and `scenetg eval` reads)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO

from scenetg.errors import ScenetgError


def read_predictions(path: str | Path) -> dict[str, tuple[float, float] | None]:
    """qid (as a string, so int qids match the records') -> (start_s, end_s) or None.

    A `pred` that is null or not two finite numbers reads as None (an invalid prediction, IoU 0).
    A line that is not a JSON object with a `qid` raises `ScenetgError("FILE:LINE: ...")`.
    Blank lines are skipped; when a qid repeats (an appended, resumed run) the last line wins.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenetgError(f"{path}: predictions file not found")
    out: dict[str, tuple[float, float] | None] = {}
    loads = json.loads
    with p.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            try:
                obj = loads(line)
            except json.JSONDecodeError as exc:
                if not line.strip():
                    continue
                raise ScenetgError(
                    f"{path}:{line_no}: invalid JSON: {exc.msg} (column {exc.colno})"
                ) from None
            if obj.__class__ is not dict:
                raise ScenetgError(
                    f"{path}:{line_no}: expected a JSON object with 'qid' and 'pred'"
                )
            qid = obj.get("qid")
            if qid is None or isinstance(qid, (dict, list, bool)):
                raise ScenetgError(f"{path}:{line_no}: missing or invalid 'qid'")
            out[str(qid)] = _pair(obj.get("pred"))
    return out


def _pair(pred) -> tuple[float, float] | None:
    if pred.__class__ is not list or len(pred) != 2:
        return None
    s, e = pred
    if s.__class__ not in (int, float) or e.__class__ not in (int, float):
        return None
    s, e = float(s), float(e)
    if not (math.isfinite(s) and math.isfinite(e)):
        return None
    return s, e


def append_prediction(
    fh: IO[str], qid: str | int, pred: tuple[float, float] | None, raw: str | None
) -> None:
    """Write one prediction line and flush, so a killed run keeps every finished query."""
    value = None if pred is None else [float(pred[0]), float(pred[1])]
    if value is not None and not all(math.isfinite(x) for x in value):
        value = None
    fh.write(json.dumps({"qid": qid, "pred": value, "raw": raw}, ensure_ascii=False) + "\n")
    fh.flush()
