"""Predictions files: JSONL, one `{"qid": ..., "pred": [start_s, end_s] | null, "raw": "..."}`
per query (the contract `scenetg ground` writes and `scenetg eval` reads).

Ranked windows (for R@k; `ground --candidates K` writes them), in either of two encodings:
- `"candidates": [[s, e], ...]` next to `pred`, best first; `pred` stays the top-1 window (the
  first candidate, null when there is none), so a reader that wants one window reads `pred` as
  before. This is what `ground` writes (with `"scores"`, each candidate's sequence log-prob).
- `"pred": [[s, e], ...]`, a ranked list in `pred` itself (an Ego4D-NLQ `predicted_times`
  converted line by line); its first window is the top-1.
A window in a ranked list that is not two finite numbers keeps its rank and scores IoU 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import IO

import numpy as np

from scenetg.errors import ScenetgError
from scenetg.grounding.annotation_formats import not_utf8


class PredictionSet(Mapping):
    """qid -> (start_s, end_s) | None, stored as one (M, 2) array (NaN rows for None).

    A read-only mapping like the dict the reference scripts build, but `rows(qids)` aligns a
    million predictions to the annotations with one index lookup per qid and array indexing,
    instead of building a million tuples.
    """

    def __init__(
        self,
        index: dict[str, int],
        pairs: np.ndarray,
        ranked: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self._index = index
        self.pairs = pairs
        self.ranked = ranked
        """None (one window per line: `pairs`) or (windows (T, 2), offsets (M + 1,)): line i's
        ranked windows are `windows[offsets[i]:offsets[i + 1]]` (NaN rows: invalid windows)."""

    @classmethod
    def from_mapping(cls, predictions: Mapping[str, object]) -> PredictionSet:
        """From a plain dict qid -> (start_s, end_s) | None | [(s, e), ...] (a ranked list, best
        first), e.g. built in a notebook."""
        index = {str(q): i for i, q in enumerate(predictions)}
        tops, ranked = [], {}
        for i, v in enumerate(predictions.values()):
            windows = ranked_windows(v)
            if windows is None:
                tops.append(_pair(list(v)) if isinstance(v, (tuple, list)) else None)
            else:
                ranked[i] = windows
                tops.append(windows[0] if windows else None)
        flat = [x for pr in tops for x in (pr or (math.nan, math.nan))]
        pairs = np.array(flat, dtype=np.float64).reshape(-1, 2)
        return cls(index, pairs, _ranked_arrays(pairs, ranked))

    def __getitem__(self, qid: str) -> tuple[float, float] | None:
        s, e = self.pairs[self._index[qid]]
        return None if math.isnan(s) else (float(s), float(e))

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def rows(self, qids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(len(qids), 2) predictions in `qids` order (NaN rows: none or missing) and the
        (len(qids),) mask of qids with no prediction line at all."""
        idx = np.fromiter(map(self._index.get, qids, repeat(-1)), np.int64, count=len(qids))
        padded = np.vstack([self.pairs, np.full((1, 2), np.nan)])  # row -1: missing
        return padded[idx], idx < 0

    def ranked_list(self, qid: str) -> list:
        """The ranked windows of `qid` (None entries: invalid windows); [] for a null `pred`.
        KeyError when the qid has no line."""
        i = self._index[qid]
        if self.ranked is None:
            top = self[qid]
            return [] if top is None else [top]
        windows, offsets = self.ranked
        return [None if math.isnan(s) else (float(s), float(e))
                for s, e in windows[offsets[i] : offsets[i + 1]]]

    def ranked_rows(self, qids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every ranked window of the predictions of `qids`: windows (T, 2), the position in
        `qids` each belongs to (T,, non-decreasing) and its rank (T,, 0 = top-1). A line with
        one window gives one row; a null `pred` or a missing qid, none."""
        idx = np.fromiter(map(self._index.get, qids, repeat(-1)), np.int64, count=len(qids))
        n = len(qids)
        if not len(self.pairs):
            return np.empty((0, 2)), np.empty(0, np.int64), np.empty(0, np.int64)
        if self.ranked is None:
            rows = self.pairs[np.maximum(idx, 0)]
            ok = (idx >= 0) & ~np.isnan(rows[:, 0])
            owner = np.flatnonzero(ok)
            return rows[ok], owner, np.zeros(owner.size, dtype=np.int64)
        windows, offsets = self.ranked
        safe = np.maximum(idx, 0)
        counts = np.where(idx >= 0, offsets[safe + 1] - offsets[safe], 0)
        owner = np.repeat(np.arange(n), counts)
        first = np.cumsum(counts) - counts
        rank = np.arange(owner.size) - first[owner]
        return windows[offsets[safe][owner] + rank], owner, rank


def read_predictions(path: str | Path) -> PredictionSet:
    """qid (as a string, so int qids match the records') -> (start_s, end_s) or None.

    A `pred` that is null or not two finite numbers reads as None (an invalid prediction, IoU 0).
    A line that is not a JSON object with a `qid`, or not UTF-8 text, raises
    `ScenetgError("FILE:LINE: ...")`.
    Blank lines are skipped; when a qid repeats (an appended, resumed run) the last line wins.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenetgError(f"{path}: predictions file not found")
    index: dict[str, int] = {}
    flat: list[float] = []
    ranked: dict[int, list] = {}
    nan_pair = (math.nan, math.nan)
    loads = json.loads
    with p.open("rb") as fh:  # bytes: a bad byte is reported with its line, not mid-buffer
        for line_no, line in enumerate(fh, start=1):
            try:
                obj = loads(line)
            except json.JSONDecodeError as exc:
                if not line.strip():
                    continue
                raise ScenetgError(
                    f"{path}:{line_no}: invalid JSON: {exc.msg} (column {exc.colno})"
                ) from None
            except UnicodeDecodeError as exc:

                raise not_utf8(f"{path}:{line_no}", exc) from None
            if obj.__class__ is not dict:
                raise ScenetgError(
                    f"{path}:{line_no}: expected a JSON object with 'qid' and 'pred'"
                )
            qid = obj.get("qid")
            if qid is None or isinstance(qid, (dict, list, bool)):
                raise ScenetgError(f"{path}:{line_no}: missing or invalid 'qid'")
            line = len(flat) // 2
            index[str(qid)] = line
            pred = obj.get("pred")
            if "candidates" in obj or (pred.__class__ is list and pred and pred[0].__class__ is list):
                top = _ranked_line(obj, ranked, line, f"{path}:{line_no}")
            else:
                top = _pair(pred)
            flat.extend(top or nan_pair)
    pairs = np.array(flat, dtype=np.float64).reshape(-1, 2)
    return PredictionSet(index, pairs, _ranked_arrays(pairs, ranked))


def ranked_windows(value) -> list | None:
    """A ranked list value (a list of [s, e] lists/tuples) as pairs (None entries for invalid
    windows); None when `value` is not a list of windows (one window, null, ...)."""
    if not isinstance(value, (list, tuple)) or not value or not isinstance(value[0], (list, tuple)):
        return None
    return [_pair(list(w)) if isinstance(w, (list, tuple)) else None for w in value]


def _ranked_line(obj: dict, ranked: dict[int, list], line: int, where: str):
    """The top-1 window of a line with ranked windows (stored in `ranked[line]`)."""
    pred = obj.get("pred")
    if "candidates" not in obj:
        windows = ranked_windows(pred)
        ranked[line] = windows
        return windows[0]
    cands = obj["candidates"]
    if not isinstance(cands, list):
        raise ScenetgError(f"{where}: 'candidates' must be a list of [start, end] windows")
    windows = ranked_windows(cands) if cands else []
    if windows is None:
        raise ScenetgError(f"{where}: 'candidates' must be a list of [start, end] windows")
    top = _pair(pred)
    if (top is None) != (not windows or windows[0] is None) or (top is not None and top != windows[0]):
        raise ScenetgError(
            f"{where}: 'pred' must be the first of 'candidates' (null when there is none), "
            f"got pred {json.dumps(pred)} and candidates[0] {json.dumps(cands[0] if cands else None)}"
        )
    ranked[line] = windows
    return top


def _ranked_arrays(pairs: np.ndarray, ranked: dict[int, list]) -> tuple[np.ndarray, np.ndarray] | None:
    """(windows (T, 2), offsets (M + 1,)) for `PredictionSet.ranked`; None when no line has a
    ranked list (every line is its `pairs` row)."""
    if not ranked:
        return None
    valid = ~np.isnan(pairs[:, 0])
    counts = np.where(valid, 1, 0)
    for line, windows in ranked.items():
        counts[line] = len(windows)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    windows = np.full((int(offsets[-1]), 2), np.nan)
    single = valid.copy()
    single[list(ranked)] = False
    windows[offsets[:-1][single]] = pairs[single]
    for line, items in ranked.items():
        for r, w in enumerate(items):
            if w is not None:
                windows[offsets[line] + r] = w
    return windows, offsets


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
    fh: IO[str],
    qid: str | int,
    pred: tuple[float, float] | None,
    raw: str | None,
    candidates: Sequence[tuple[float, float]] | None = None,
    scores: Sequence[float] | None = None,
) -> None:
    """Write one prediction line and flush, so a killed run keeps every finished query.

    With `candidates` (ranked windows, best first; `pred` must be the first, or None when
    there is none) the line also carries `candidates` and, when given, their `scores`."""
    value = None if pred is None else [float(pred[0]), float(pred[1])]
    if value is not None and not all(math.isfinite(x) for x in value):
        value = None
    row: dict = {"qid": qid, "pred": value}
    if candidates is not None:
        row["candidates"] = [[float(s), float(e)] for s, e in candidates]
        if (row["candidates"][0] if row["candidates"] else None) != value:
            raise ValueError("pred must be the first candidate")
        if scores is not None:
            row["scores"] = [round(float(x), 6) for x in scores]
    row["raw"] = raw
    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    fh.flush()
