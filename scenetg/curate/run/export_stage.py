"""The export stage of a build: every video's stage files -> videos / scenes / audit rows ->
`export.write_dataset`, and the `BuildSummary` the CLI prints.

Reads only what `Build` has stored (`stored_results`), so it runs the same after a local build,
a Ray build or a resume; videos not finished are rows with an error, not missing rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scenetg.config import BuildConfig
from scenetg.curate.run.workdir import VideoJob, WorkDir
from scenetg.curate.stages.export import (
    assign_split,
    sample_id,
    scenes_table,
    videos_table,
    write_dataset,
)


class StoredBuild(Protocol):
    """What the export reads of a `Build` (`scenetg.curate.run.pipeline`), which calls it."""

    cfg: BuildConfig
    work: WorkDir
    manifest: dict[str, Any]

    def jobs(self) -> list[VideoJob]: ...

    def stored_results(self, job: VideoJob) -> tuple[Any, Any, Any]: ...


@dataclass
class BuildSummary:
    """What a build (or a stage run) did; the CLI prints it as a table."""

    out_dir: Path
    videos_ok: int = 0
    videos_failed: int = 0
    scenes: int = 0
    queries_generated: int = 0
    queries_kept: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 all videos ok, 3 finished but some videos failed."""
        return 3 if self.videos_failed else 0


def export_build(b: StoredBuild) -> BuildSummary:
    """Write videos.parquet, scenes.parquet, data/, audit/ and the card from `b`'s stage files;
    record the counts in its manifest."""
    cfg = b.cfg
    summary = BuildSummary(out_dir=b.work.out)
    video_rows, scene_rows, audit_rows = [], [], []
    caption_model = clip_model = None
    for job in b.jobs():
        entry = b.manifest["videos"][job.video_id]
        shots, captions, figures = b.stored_results(job)
        row = {"video_id": job.video_id, "path": job.rel_path, "duration_s": None, "fps": None,
               "width": None, "height": None, "n_frames": None, "status": "error",
               "error": entry.get("error")}
        if entry["status"] == "ok" and shots and captions and figures:
            row.update(shots["video"], status="ok", error=None)
        elif entry["status"] != "error":
            row["error"] = "not processed (run the missing stages or `scenetg build --resume`)"
        video_rows.append(row)
        if row["status"] != "ok":
            summary.videos_failed += 1
            summary.errors[job.video_id] = row["error"]
            continue
        summary.videos_ok += 1
        caption_model, clip_model = captions["model"], figures["clip_model"]
        split = assign_split(job.video_id, cfg.export.splits, cfg.export.split_salt)
        for scene, text, fig in zip(shots["scenes"], captions["captions"], figures["figures"], strict=True):
            scene_rows.append({"video_id": job.video_id, **scene})
            audit_rows.append({
                "sample_id": sample_id(job.video_id, scene["scene_index"], text),
                "video_id": job.video_id,
                "video_path": job.rel_path,
                "duration_s": shots["video"]["duration_s"],
                "start_s": scene["start_s"],
                "end_s": scene["end_s"],
                "scene_index": scene["scene_index"],
                "query": text,
                "caption_model": captions["model"],
                "clip_model": figures["clip_model"],
                **{k: fig[k] for k in ("clip_self", "clip_best_other", "clip_margin", "clip_rank",
                                       "confusers", "kept", "drop_reason")},
                "split": split,
            })
    summary.scenes = len(scene_rows)
    summary.queries_generated = len(audit_rows)
    kept = [{k: v for k, v in r.items() if k not in ("kept", "drop_reason")} for r in audit_rows if r["kept"]]
    summary.queries_kept = len(kept)
    for r in kept:
        summary.split_counts[r["split"]] = summary.split_counts.get(r["split"], 0) + 1
    drops: dict[str, int] = {}
    for r in audit_rows:
        if not r["kept"]:
            drops[r["drop_reason"]] = drops.get(r["drop_reason"], 0) + 1
    hours = sum(r["duration_s"] or 0.0 for r in video_rows if r["status"] == "ok") / 3600
    write_dataset(b.work.out, kept, audit_rows, cfg.export, {
        "caption_model": caption_model or cfg.captions.model,
        "clip_model": clip_model or cfg.filter.clip_model,
        "min_margin": cfg.filter.min_margin,
        "n_videos": summary.videos_ok,
        "hours": round(hours, 3),
        "n_generated": summary.queries_generated,
        "n_kept": summary.queries_kept,
        "drop_counts": dict(sorted(drops.items())),
        "split_counts": dict(sorted(summary.split_counts.items())),
        "config": dataclasses.asdict(cfg),
    }, extra_tables={"videos.parquet": videos_table(video_rows), "scenes.parquet": scenes_table(scene_rows)})
    b.manifest["counts"] = {
        "videos_ok": summary.videos_ok, "videos_failed": summary.videos_failed,
        "scenes": summary.scenes, "queries_generated": summary.queries_generated,
        "queries_kept": summary.queries_kept, "drop_counts": drops,
        "split_counts": summary.split_counts,
    }
    b.save_manifest()
    return summary
