"""`scenetg inspect OUT`: dataset statistics and an HTML report.

The report shows, per video, a strip of scene thumbnails (one frame at each scene's middle, from
one decode pass per video) with the query, kept/dropped and the CLIP margin, so a person can see
at a glance why the filter dropped what it dropped.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from scenetg.curate.workdir import write_bytes_atomic
from scenetg.errors import ScenetgError, VideoError


def dataset_stats(out_dir: Path) -> dict[str, Any]:
    """Counts a user wants first: videos, hours, scenes, queries kept/dropped by reason, splits."""
    out = Path(out_dir)
    for name in ("videos.parquet", "audit"):
        if not (out / name).exists():
            raise ScenetgError(f"{out}: no {name}; run `scenetg build` (or `scenetg export`) first")
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    audit = pq.read_table(out / "audit").to_pylist()
    ok = [v for v in videos if v["status"] == "ok"]
    kept = [a for a in audit if a["kept"]]
    lengths = sorted(a["end_s"] - a["start_s"] for a in kept)
    return {
        "videos_ok": len(ok),
        "videos_failed": len(videos) - len(ok),
        "hours": round(sum(v["duration_s"] for v in ok) / 3600, 3),
        "queries_generated": len(audit),
        "queries_kept": len(kept),
        "drop_reasons": dict(sorted(Counter(a["drop_reason"] for a in audit if not a["kept"]).items())),
        "split_counts": dict(sorted(Counter(a["split"] for a in kept).items())),
        "median_moment_s": lengths[len(lengths) // 2] if lengths else None,
        "errors": {v["video_id"]: v["error"] for v in videos if v["status"] != "ok"},
    }


def write_report(out_dir: Path, videos_dir: Path, max_videos: int = 200, thumb_side: int = 160) -> Path:
    """Write OUT/report/index.html (thumbnails embedded, so the file can be moved alone)."""
    from scenetg.video.frames import iter_frames_at, jpeg_data_url
    from scenetg.video.lookup import inside_root

    out = Path(out_dir)
    stats = dataset_stats(out)
    audit = pq.read_table(out / "audit").to_pylist()
    by_video: dict[str, list[dict[str, Any]]] = {}
    for row in audit:
        by_video.setdefault(row["video_id"], []).append(row)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>SceneTG report</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}.strip{display:flex;gap:8px;overflow-x:auto}"
        f".scene{{width:{thumb_side}px;flex:none;font-size:12px;border:3px solid;padding:3px}}"
        ".kept{border-color:#2a2}.dropped{border-color:#c33;opacity:.75}img{width:100%}</style>",
        "<h1>SceneTG dataset report</h1><table>",
    ]
    for key, value in stats.items():
        if key != "errors":
            parts.append(f"<tr><th align=left>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>")
    parts.append("</table>")
    if stats["errors"]:
        parts.append("<h2>Failed videos</h2><ul>")
        parts += [f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in stats["errors"].items()]
        parts.append("</ul>")
    for video_id in sorted(by_video)[:max_videos]:
        rows = sorted(by_video[video_id], key=lambda r: r["scene_index"])
        times = [(r["start_s"] + r["end_s"]) / 2 for r in rows]
        parts.append(f"<h2>{html.escape(video_id)}</h2>")
        try:  # video_path comes from Parquet: never open a file outside videos_dir
            video = inside_root(videos_dir, rows[0]["video_path"])
        except VideoError as exc:
            parts.append(f"<p>skipped: {html.escape(str(exc))}</p>")
            continue
        frames = list(iter_frames_at(video, times, max_side=thumb_side))
        parts.append("<div class=strip>")
        for row, frame in zip(rows, frames, strict=True):
            cls = "kept" if row["kept"] else "dropped"
            margin = "n/a" if row["clip_margin"] is None else f"{row['clip_margin']:+.3f}"
            status = "kept" if row["kept"] else f"dropped: {row['drop_reason']}"
            parts.append(
                f"<div class='scene {cls}'><img src='{jpeg_data_url(frame, quality=80)}'>"
                f"<b>#{row['scene_index']}</b> {row['start_s']:.2f}–{row['end_s']:.2f} s<br>"
                f"{html.escape(row['query'])}<br><i>{status}</i>, margin {margin}, rank {row['clip_rank']}</div>"
            )
        parts.append("</div>")
    path = out / "report" / "index.html"
    write_bytes_atomic(path, "\n".join(parts).encode())
    return path
