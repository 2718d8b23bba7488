"""What made a predictions file: a sidecar ``<out stem>.producer.json`` next to the JSONL.

The JSONL keeps one ``{"qid", "pred", "raw"}`` object per line (DESIGN.md "Interfaces"); the
sidecar records the producer — method, model path or id with a content fingerprint
(`scenetg.models.fingerprint`), backend, frame sampling, prompt version, decoding settings — and
its ``fingerprint`` (a hash of all of it). `prepare_output` refuses to resume into a file made by
another producer (a one-line ConfigError naming what differs) unless asked to overwrite, so a
file of model A is never silently completed, or credited, as model B's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from scenetg.atomic_files import check_output_file, read_json, write_json_atomic
from scenetg.errors import ConfigError
from scenetg.grounding.prompts import grounding_prompt, mcq_prompt
from scenetg.models.fingerprint import model_fingerprint

PRODUCER_SUFFIX = ".producer.json"


def producer_path(out: str | Path) -> Path:
    """The sidecar of predictions file `out` (``preds.jsonl`` -> ``preds.producer.json``)."""
    return Path(out).with_suffix(PRODUCER_SUFFIX)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prompt_version(kind: str = "ground") -> str:
    """A hash of the prompt template (placeholders filled), so a prompt edit is a new producer."""
    if kind == "answer":
        return _short_hash(mcq_prompt("{question}", ["{a}", "{b}"]))
    return _short_hash(grounding_prompt("{query}", 60.0))


def model_reference(model: Any) -> str:
    """The name a model is recorded under: its id/path, or a loaded runner's source."""
    if isinstance(model, (str, Path)):
        return str(model)
    for owner in (getattr(model, "model", None), model):
        name = getattr(owner, "name_or_path", None) or getattr(owner, "name", None)
        if isinstance(name, str) and name:
            return name
    return type(model).__name__


def describe_model(model: Any, name: str | None = None) -> dict[str, Any]:
    """``{"model": ref, "model_fingerprint": ...}`` (`name` overrides the reference of a loaded
    runner; the fingerprint is of the folder or cached Hub snapshot it names, else None)."""
    ref = name or model_reference(model)
    return {"model": ref, "model_fingerprint": model_fingerprint(ref)}


def with_fingerprint(producer: dict[str, Any]) -> dict[str, Any]:
    """`producer` plus ``fingerprint``: 12 hex digits over every other field."""
    body = {k: v for k, v in producer.items() if k != "fingerprint"}
    return {**body, "fingerprint": _short_hash(json.dumps(body, sort_keys=True, default=str))}


def producer_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key: old -> new`` for each field that differs (the fingerprint itself left out)."""
    keys = sorted((set(old) | set(new)) - {"fingerprint"})
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def prepare_output(out: str | Path, producer: dict[str, Any], overwrite: bool = False,
                   flag: str = "--out") -> None:
    """Make `out` ready for appending rows of `producer` and write its sidecar.

    A missing or empty `out` starts fresh; rows of the same producer are resumed; rows of another
    producer, or rows with no sidecar (written before producers were recorded), are a ConfigError
    unless `overwrite`, which deletes them. A folder or a special file at `out` is a ConfigError.
    """
    out = Path(out)
    check_output_file(out, flag)
    side = producer_path(out)
    check_output_file(side, f"{flag} (its producer record)")
    has_rows = out.is_file() and out.stat().st_size > 0
    if has_rows and overwrite:
        out.unlink()
    elif has_rows:
        if not side.is_file():
            raise ConfigError(f"{out}: predictions with no producer record ({side.name}); "
                              "pass --overwrite to start over")
        try:
            old = read_json(side)
        except (OSError, ValueError):
            raise ConfigError(f"{side}: unreadable producer record; pass --overwrite to start over") from None
        diff = producer_difference(old if isinstance(old, dict) else {}, producer)
        if diff:
            raise ConfigError(f"{out} was made by another producer ({diff}); pass --overwrite "
                              f"to replace it, or write to another {flag}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(side, producer)
