"""Predictions files: JSONL, one `{"qid": ..., "pred": [start_s, end_s] | null, "raw": "..."}`
per query (the contract `scenetg ground` writes and `scenetg eval` reads)."""

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

    def __init__(self, index: dict[str, int], pairs: np.ndarray, duplicates: int = 0):
        self._index = index
        self.pairs = pairs
        self.duplicates = duplicates
        """Lines that repeat an earlier qid with the same prediction (`scenetg eval` warns)."""

    @classmethod
    def from_mapping(cls, predictions: Mapping[str, object]) -> PredictionSet:
        """From a plain dict qid -> (start_s, end_s) | None (e.g. built in a notebook)."""
        index = {str(q): i for i, q in enumerate(predictions)}
        pairs = [_pair(list(v)) if isinstance(v, (tuple, list)) else None for v in predictions.values()]
        flat = [x for pr in pairs for x in (pr or (math.nan, math.nan))]
        return cls(index, np.array(flat, dtype=np.float64).reshape(-1, 2))

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


def read_predictions(path: str | Path) -> PredictionSet:
    """qid (as a string, so int qids match the records') -> (start_s, end_s) or None.

    A `pred` that is null or not two finite numbers reads as None (an invalid prediction, IoU 0).
    A line that is not a JSON object with a `qid`, or not UTF-8 text, raises
    `ScenetgError("FILE:LINE: ...")`.
    Blank lines are skipped. A qid on several lines with the same prediction is counted in
    `duplicates`; with different predictions it is a `ScenetgError` naming both lines (which one
    is right cannot be told).
    """
    p = Path(path)
    if p.is_dir():
        raise ScenetgError(f"{path}: is a folder, not a predictions file")
    if not p.is_file():
        raise ScenetgError(f"{path}: predictions file not found")
    first_line: dict[str, int] = {}
    duplicates = 0
    index: dict[str, int] = {}
    flat: list[float] = []
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
            key, pair = str(qid), _pair(obj.get("pred")) or nan_pair
            if key in index:
                i = index[key]
                if not _same_pair(flat[2 * i : 2 * i + 2], pair):
                    raise ScenetgError(
                        f"{path}:{line_no}: qid {key!r} again with another prediction (first on "
                        f"line {first_line[key]}); keep one line per qid"
                    )
                duplicates += 1
                continue
            index[key] = len(flat) // 2
            first_line[key] = line_no
            flat.extend(pair)
    return PredictionSet(index, np.array(flat, dtype=np.float64).reshape(-1, 2), duplicates)


def _same_pair(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


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
