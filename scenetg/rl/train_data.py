"""Training rows for GRPO: grounding records (any format the eval loaders read) → rows with the
prompt, the resolved video file and the GT span, checked before any model loads.

A row: ``prompt`` (one user turn: a video block and `grounding_prompt`), ``video_path``,
``duration_s``, ``start_s``, ``end_s`` (the reward functions' columns), ``query``, ``qid``.
A record with several GT windows trains on its first (SceneTG queries have exactly one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetg.errors import ConfigError, VideoError
from scenetg.grounding.loaders import HUB_PREFIX, detect_format, load_annotations
from scenetg.grounding.prompts import grounding_prompt
from scenetg.rl.config import DataConfig
from scenetg.video.lookup import find_video

MAX_LISTED_MISSING = 5


@dataclass
class TrainingData:
    rows: list[dict[str, Any]]
    video_root: Path
    source: str
    load_summary: str


def grounding_messages(query: str, duration_s: float) -> list[dict]:
    """The conversational prompt of one row: a user turn holding the video and the instruction."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "video"},
                {"type": "text", "text": grounding_prompt(query, duration_s)},
            ],
        }
    ]


def dataset_source(dataset: str) -> tuple[str, bool]:
    """``(source, is_hub)``: ``hub:ORG/NAME`` is a Hub dataset (passed on as is, the loaders'
    form); anything else is a path (one that does not exist is an error, never a Hub lookup)."""
    if dataset.startswith(HUB_PREFIX):
        return dataset, True
    path = Path(dataset).expanduser()
    if not path.exists():
        hint = "; run `make build` first" if path.name in ("dataset", "out") or "out" in path.parts else ""
        raise ConfigError(
            f"data.dataset: {dataset}: no such file or folder{hint} (a Hub dataset is hub:ORG/NAME)"
        )
    return str(path), False


def default_video_root(dataset_path: Path) -> Path | None:
    """The ``--videos`` folder a SceneTG build was made from (its manifest), if any."""
    manifest = dataset_path / "manifest.json"
    if dataset_path.is_dir() and manifest.is_file():
        try:
            videos_dir = json.loads(manifest.read_text(encoding="utf-8")).get("videos_dir")
        except ValueError:
            return None
        return Path(videos_dir) if videos_dir else None
    return None


def load_training_data(cfg: DataConfig) -> TrainingData:
    """Read and check the training rows; ConfigError (one line, plus the first missing videos)
    when videos are missing, durations unknown, or nothing is left."""

    source, is_hub = dataset_source(cfg.dataset)
    fmt = "scenetg" if is_hub else cfg.format
    if fmt == "auto":
        fmt = detect_format(source)
    root = Path(cfg.video_root).expanduser() if cfg.video_root else None
    if root is None and not is_hub:
        root = default_video_root(Path(source))
    if root is None:
        raise ConfigError("data.video_root: set the folder the training videos are under")
    if not root.is_dir():
        raise ConfigError(f"data.video_root: {root}: no such folder")
    records, report = load_annotations(
        source, fmt, metadata_csv=cfg.durations, videos_dir=root,
        split=cfg.split if fmt == "scenetg" else None, check_values=True,
    )
    if cfg.limit is not None:
        records = records[: cfg.limit]
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    no_duration: list[str] = []
    for rec in records:
        try:
            path = find_video(root, rec.video_id)
        except VideoError as exc:
            missing.append(f"{rec.video_id} ({exc})")
            continue
        if path is None:
            missing.append(rec.video_id)
            continue
        if not rec.duration_s:
            no_duration.append(rec.video_id)
            continue
        start, end = rec.windows[0]
        rows.append(
            {
                "qid": str(rec.qid),
                "prompt": grounding_messages(rec.query, rec.duration_s),
                "video_path": str(path),
                "duration_s": float(rec.duration_s),
                "start_s": float(start),
                "end_s": float(end),
                "query": rec.query,
            }
        )
    if missing:
        unique = sorted(set(missing))
        listed = ", ".join(unique[:MAX_LISTED_MISSING])
        more = f" and {len(unique) - MAX_LISTED_MISSING} more" if len(unique) > MAX_LISTED_MISSING else ""
        raise ConfigError(
            f"{len(missing)} training queries have no video file under {root} "
            f"({len(unique)} videos: {listed}{more}); fix data.video_root"
        )
    if no_duration:
        raise ConfigError(
            f"{len(no_duration)} training queries have no known video duration "
            f"(e.g. {no_duration[0]}); set data.durations"
        )
    if not rows:
        raise ConfigError(f"data.dataset: {cfg.dataset}: no training queries (split {cfg.split!r})")
    return TrainingData(rows, root, cfg.dataset, report.summary())
