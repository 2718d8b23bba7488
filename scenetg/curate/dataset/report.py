"""`scenetg inspect OUT`: dataset statistics (tables), plots and an HTML report.

Statistics are pandas tables (summary, splits, drop reasons, distributions, per video) that the
terminal and the report both show. The report (`OUT/report/index.html`) links PNG plots of
scene length, query length, CLIP margin and kept ratio per video (`OUT/report/plots/`), and
shows per video a strip of scene thumbnails (one frame at each scene's middle, from one decode
pass per video) with the query, kept/dropped and the CLIP margin, so a person can see at a
glance why the filter dropped what it dropped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from scenetg.atomic_files import write_bytes_atomic
from scenetg.curate.dataset.plots import PLOTS, write_plots
from scenetg.errors import ScenetgError
from scenetg.video.lookup import inside_root

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "table.stats{border-collapse:collapse;margin:.5em 0 1.2em}"
    "table.stats th,table.stats td{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "table.stats th:first-child,table.stats td:first-child{text-align:left}"
    ".problems{border:2px solid #c33;background:#fee;padding:.5em 1em}"
    ".plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0}.plots img{width:420px}"
    ".strip{display:flex;gap:8px;overflow-x:auto}"
    ".scene{flex:none;font-size:12px;border:3px solid;padding:3px}.scene img{width:100%}"
    ".kept{border-color:#2a2}.dropped{border-color:#c33;opacity:.75}"
)


def load_tables(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(videos, audit) of a built folder as DataFrames; ScenetgError naming what to run."""
    from scenetg.curate.stages.export import read_audit, read_videos  # deferred: pulls pyarrow

    out = Path(out_dir)
    for name in ("videos.parquet", "audit"):
        if not (out / name).exists():
            raise ScenetgError(f"{out}: no {name}; run `scenetg build` (or `scenetg export`) first")
    return read_videos(out).to_pandas(), read_audit(out).to_pandas()


def _describe(name: str, values: pd.Series) -> dict[str, Any]:
    v = values.dropna().astype(float)
    row: dict[str, Any] = {"measure": name, "n": int(v.size)}
    for key, q in (("min", 0.0), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("max", 1.0)):
        row[key] = float(v.quantile(q)) if v.size else None
    row["mean"] = float(v.mean()) if v.size else None
    return row


def per_video_table(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per video with queries: scenes, kept, kept ratio, median CLIP margin."""
    if audit.empty:
        return pd.DataFrame(columns=["video_id", "duration_s", "scenes", "kept", "kept_ratio", "median_margin"])
    g = audit.groupby("video_id", sort=True)
    table = pd.DataFrame({
        "duration_s": g["duration_s"].first(),
        "scenes": g.size(),
        "kept": g["kept"].sum().astype(int),
        "median_margin": g["clip_margin"].median(),
    })
    table.insert(3, "kept_ratio", table["kept"] / table["scenes"])
    return table.reset_index()


def stats_tables(videos: pd.DataFrame, audit: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The statistics as tables: summary, splits, drop_reasons, distributions, per_video, failed."""
    from scenetg.curate.stages.export import SPLIT_ORDER  # deferred: pulls pyarrow

    ok = videos[videos["status"] == "ok"]
    kept = audit[audit["kept"]]
    summary = pd.DataFrame([
        ("videos ok", len(ok)), ("videos failed", len(videos) - len(ok)),
        ("hours of video", round(float(ok["duration_s"].sum()) / 3600, 3)),
        ("queries generated", len(audit)), ("queries kept", len(kept)),
        ("kept share", round(len(kept) / len(audit), 3) if len(audit) else "–"),
    ], columns=["statistic", "value"], dtype=object)  # object: counts stay integers
    splits = pd.DataFrame([
        {"split": s, "videos": int(kept.loc[kept["split"] == s, "video_id"].nunique()),
         "queries": int((kept["split"] == s).sum())} for s in SPLIT_ORDER])
    dropped = audit[~audit["kept"]]
    reasons = dropped["drop_reason"].fillna("unknown").value_counts().sort_index()
    drop_reasons = pd.DataFrame({"reason": reasons.index, "queries": reasons.to_numpy(int)})
    drop_reasons["share of generated"] = (drop_reasons["queries"] / max(len(audit), 1)).round(3)
    words = audit["query"].fillna("").str.split().str.len()
    distributions = pd.DataFrame([
        _describe("scene length (s), all queries", audit["end_s"] - audit["start_s"]),
        _describe("moment length (s), kept", kept["end_s"] - kept["start_s"]),
        _describe("query length (words), all", words),
        _describe("CLIP margin, kept", kept["clip_margin"]),
        _describe("CLIP margin, dropped", dropped["clip_margin"]),
    ])
    failed = videos.loc[videos["status"] != "ok", ["video_id", "error"]].reset_index(drop=True)
    return {"summary": summary, "splits": splits, "drop_reasons": drop_reasons,
            "distributions": distributions, "per_video": per_video_table(audit), "failed": failed}


def dataset_stats(out_dir: Path) -> dict[str, Any]:
    """The headline counts as one JSON-ready dict (`scenetg inspect --json`)."""
    videos, audit = load_tables(out_dir)
    ok = videos[videos["status"] == "ok"]
    kept = audit[audit["kept"]]
    lengths = sorted((kept["end_s"] - kept["start_s"]).tolist())
    return {
        "videos_ok": len(ok),
        "videos_failed": len(videos) - len(ok),
        "hours": round(float(ok["duration_s"].sum()) / 3600, 3),
        "queries_generated": len(audit),
        "queries_kept": len(kept),
        "drop_reasons": {str(k): int(v) for k, v in
                         audit.loc[~audit["kept"], "drop_reason"].fillna("unknown").value_counts().sort_index().items()},
        "split_counts": {str(k): int(v) for k, v in kept["split"].value_counts().sort_index().items()},
        "median_moment_s": lengths[len(lengths) // 2] if lengths else None,
        "errors": dict(zip(videos.loc[videos["status"] != "ok", "video_id"],
                           videos.loc[videos["status"] != "ok", "error"], strict=True)),
    }


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="stats", na_rep="–",
                      float_format=lambda x: f"{x:.3f}", escape=True)


def _strip_html(rows: list[dict[str, Any]], frames: list | None, why_none: str, thumb_side: int) -> str:
    from scenetg.video.frames import jpeg_data_url  # deferred: pulls av

    parts = ["<div class=strip>"]
    if frames is None:
        parts.append(f"<p><i>no thumbnails: {html.escape(why_none)}</i></p>")
    for i, row in enumerate(rows):
        cls = "kept" if row["kept"] else "dropped"
        margin = "n/a" if pd.isna(row["clip_margin"]) else f"{row['clip_margin']:+.3f}"
        status = "kept" if row["kept"] else f"dropped: {row['drop_reason']}"
        img = f"<img src='{jpeg_data_url(frames[i], quality=80)}' alt='scene {row['scene_index']}'>" if frames else ""
        parts.append(
            f"<div class='scene {cls}' style='width:{thumb_side}px'>{img}"
            f"<b>#{row['scene_index']}</b> {row['start_s']:.2f}–{row['end_s']:.2f} s<br>"
            f"{html.escape(str(row['query']))}<br><i>{html.escape(status)}</i>, margin {margin}, "
            f"rank {row['clip_rank']}</div>")
    parts.append("</div>")
    return "".join(parts)


def _thumbnails(videos_dir: Path | None, rel_path: str, times: list[float], side: int):
    """(frames, None) or (None, reason): a moved, escaping or broken video costs only its strip."""
    from scenetg.video.frames import iter_frames_at  # deferred: pulls av

    if videos_dir is None:
        return None, "videos folder unknown"
    try:
        path = inside_root(videos_dir, rel_path)
        if not path.is_file():
            return None, f"{path} not found"
        return list(iter_frames_at(path, times, max_side=side)), None
    except Exception as exc:  # the report is still worth having without this strip
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def write_report(out_dir: Path, videos_dir: Path | None, max_videos: int = 200, thumb_side: int = 160,
                 problems: list[str] | None = None) -> Path:
    """Write OUT/report/index.html and OUT/report/plots/*.png; returns the HTML path."""

    out = Path(out_dir)
    report_dir = out / "report"
    videos, audit = load_tables(out)
    tables = stats_tables(videos, audit)
    plots = write_plots(audit, tables["per_video"], report_dir / "plots") if len(audit) else []
    parts = ["<!doctype html><html lang=en><head><meta charset='utf-8'><title>SceneTG report</title>",
             f"<style>{STYLE}</style></head><body>", "<h1>SceneTG dataset report</h1>"]
    if problems:
        parts.append("<div class=problems><b>This folder is not a consistent dataset:</b><ul>")
        parts += [f"<li>{html.escape(p)}</li>" for p in problems]
        parts.append("</ul></div>")
    for key, title in (("summary", "Summary"), ("splits", "Splits (kept queries)"),
                       ("drop_reasons", "Dropped queries"), ("distributions", "Distributions")):
        parts += [f"<h2>{title}</h2>", _table_html(tables[key])]
    if plots:
        parts.append("<div class=plots>")
        for path in plots:
            rel = f"plots/{path.name}"
            parts.append(f"<figure><a href='{rel}'><img src='{rel}' alt='{PLOTS[path.name]}'></a>"
                         f"<figcaption><a href='{rel}'>{PLOTS[path.name]}</a></figcaption></figure>")
        parts.append("</div>")
    parts += ["<h2>Per video</h2>", _table_html(tables["per_video"])]
    if len(tables["failed"]):
        parts += ["<h2>Failed videos</h2>", _table_html(tables["failed"])]
    parts.append("<h2>Scenes</h2>")
    video_ids = sorted(audit["video_id"].unique())
    if len(video_ids) > max_videos:
        parts.append(f"<p>First {max_videos} of {len(video_ids)} videos.</p>")
    for video_id in video_ids[:max_videos]:
        rows = audit[audit["video_id"] == video_id].sort_values("scene_index").to_dict("records")
        times = [(r["start_s"] + r["end_s"]) / 2 for r in rows]
        frames, why = _thumbnails(videos_dir, rows[0]["video_path"], times, thumb_side)
        parts += [f"<h3>{html.escape(video_id)}</h3>", _strip_html(rows, frames, why or "", thumb_side)]
    parts.append("</body></html>")
    path = report_dir / "index.html"
    write_bytes_atomic(path, "\n".join(parts).encode())
    return path
