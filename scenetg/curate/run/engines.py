"""The Ray engine: the same per-video stage methods, placed by Ray Data.

Decode + shot detection run as CPU tasks; captioning and CLIP run in actor pools that hold their
model (the CLIP actors take `CLIP_VIDEOS_PER_CALL` videos at a time, so their calls span videos
as the local engine's do, `clip_batches.py`) (GPUs per actor from `engine.caption_gpus` / `engine.clip_gpus`, checked against the
cluster before anything starts, see `plan_resources`). Workers write the same
per-video stage files as the local engine (OUT must be on storage every node sees, as the videos
are); only the driver writes the manifest. Hence both engines give identical output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from scenetg.config import EngineConfig, build_config_from_dict
from scenetg.curate.run import keyframes
from scenetg.curate.run.clip_batches import CrossVideoFilter, FilterFrames
from scenetg.curate.run.workdir import VideoJob, one_line
from scenetg.errors import ConfigError, ScenetgError, VideoError
from scenetg.extras import require_extra
from scenetg.ray_engine import init_ray


def _job(row: dict[str, Any]) -> VideoJob:
    return VideoJob(row["video_id"], row["rel_path"], Path(row["path"]), row["key"])


class _Worker:
    """Runs one stage of `Build` on rows; holds the Build (and so its models) for an actor's life."""

    def __init__(self, build_type: type, out_dir: str, cfg_dict: dict[str, Any], videos_dir: str,
                 stage: str):
        # The driver's Build class comes in as an argument (Ray pickles it by reference), so this
        # module does not import the pipeline that imports it.
        self.build = build_type(Path(out_dir), build_config_from_dict(cfg_dict), Path(videos_dir))
        self.stage = stage

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("error"):
            return row
        job = _job(row)
        try:
            shots = self.build.shots(job, resume=True)
            if self.stage in ("captions", "filter"):
                captions = self.build.captions(job, shots, resume=True)
                if self.stage == "filter":
                    self.build.filter(job, shots, captions, resume=True)
        except VideoError as exc:
            return {**row, "error": str(exc)}
        except ScenetgError:
            raise
        except Exception as exc:  # one broken video must not stop the build
            return {**row, "error": f"{job.rel_path}: {type(exc).__name__}: {exc}".splitlines()[0]}
        return row


CLIP_VIDEOS_PER_CALL = 16
"""Videos handed to a CLIP actor at once: enough short clips (3-5 scenes x 8 frames) to fill
calls of a few hundred images; a long video's frames are encoded as they come."""


def _error_text(job: VideoJob, exc: Exception) -> str:
    if isinstance(exc, VideoError):
        return str(exc)
    return f"{job.rel_path}: {type(exc).__name__}: {exc}".splitlines()[0]


class _FilterWorker(_Worker):
    """The filter stage on a batch of rows: one `CrossVideoFilter` over their videos."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np


        keys = list(batch)
        rows = [dict(zip(keys, values, strict=True)) for values in zip(*(batch[k] for k in keys), strict=True)]
        b, errors, failed = self.build, {}, set()

        def on_error(job: VideoJob, exc: Exception) -> None:
            failed.add(job.video_id)
            errors[job.video_id] = _error_text(job, exc)
            filters.drop(job.video_id)

        filters = CrossVideoFilter(b, failed, on_error, lambda job: None)
        for row in rows:
            if row["error"]:
                continue
            job = _job(row)
            try:
                shots = b.shots(job, resume=True)
                captions = b.captions(job, shots, resume=True)
                request = keyframes.filter_request(
                    shots, b.cfg.filter.frames_per_scene, "", b.models.clip
                )
                stored = keyframes.KeyframeStore(b._keyframes_dir(job)).load(job.path, *request)
                frames = FilterFrames(len(stored), request[1], stored) if stored else None
                filters.add(job, shots, captions, frames, resume=True)
            except (ScenetgError, KeyboardInterrupt) as exc:
                if not isinstance(exc, VideoError):
                    raise
                on_error(job, exc)
            except Exception as exc:  # one broken video must not stop the build
                on_error(job, exc)
        filters.flush()
        for row in rows:
            row["error"] = row["error"] or errors.get(row["video_id"], "")
        return {k: np.array([row[k] for row in rows]) for k in keys}


def plan_resources(eng: EngineConfig, cluster: dict[str, float], upto: str) -> dict[str, float]:
    """GPUs per caption / CLIP actor (`auto` resolved), checked against what the cluster offers.

    `auto` gives each actor pool a whole GPU when the cluster has enough left after the explicit
    requests, else an equal fraction of what is left, else 0 (CPU). A request no node set can
    meet would leave Ray Data's actors pending forever, so it fails here, naming its key.
    """
    stages = [s for s in ("caption", "clip") if upto == "filter" or (s == "caption" and upto == "captions")]
    actors = {s: getattr(eng, f"{s}_actors") for s in stages}
    asked = {s: getattr(eng, f"{s}_gpus") for s in stages}
    total_gpus = float(cluster.get("GPU", 0.0))
    total_cpus = float(cluster.get("CPU", 0.0))
    auto = [s for s in stages if asked[s] == "auto"]
    left = total_gpus - sum(actors[s] * asked[s] for s in stages if s not in auto)
    n_auto = sum(actors[s] for s in auto)
    share = min(1.0, int(left / n_auto * 100) / 100) if auto and left > 0 else 0.0
    gpus = {s: share if s in auto else float(asked[s]) for s in stages}
    if total_cpus < 1:
        raise ConfigError(f"engine.num_cpus: each stage task needs 1 CPU; the Ray cluster offers {total_cpus:g}")
    for s in stages:
        if actors[s] > total_cpus:
            raise ConfigError(f"engine.{s}_actors: {actors[s]} actor(s) need 1 CPU each; "
                              f"the Ray cluster offers {total_cpus:g} CPU")
        need = actors[s] * gpus[s]
        if need > total_gpus + 1e-9:
            raise ConfigError(f"engine.{s}_gpus: {actors[s]} actor(s) x {gpus[s]:g} GPU need {need:g} GPU; "
                              f"the Ray cluster offers {total_gpus:g} (use auto or 0)")
        if gpus[s] > 1 and not gpus[s].is_integer():
            raise ConfigError(f"engine.{s}_gpus: Ray takes a fraction below 1 or a whole number, got {gpus[s]:g}")
    return gpus


def run_ray(build: Any, jobs: list[VideoJob], upto: str) -> None:
    """Run stages up to `upto` on `jobs` with Ray Data; statuses go to the manifest on the driver."""
    require_extra("ray", "ray", "--engine ray (engine.name: ray)")
    import ray
    import ray.data

    eng = build.cfg.engine
    init_ray(eng.ray_address, eng.num_cpus)
    gpus = plan_resources(eng, ray.cluster_resources(), upto)
    if not jobs:
        return
    rows = [{"video_id": j.video_id, "rel_path": j.rel_path, "path": str(j.path), "key": j.key,
             "error": ""} for j in jobs]
    args = (type(build), str(build.work.out), build.cfg.to_dict(), str(build.videos_dir))
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map(_Worker, fn_constructor_args=(*args, "shots"), num_cpus=1, concurrency=(1, max(1, len(rows))))
    if upto in ("captions", "filter"):
        ds = ds.map(_Worker, fn_constructor_args=(*args, "captions"), concurrency=eng.caption_actors,
                    num_gpus=gpus["caption"] or None, num_cpus=1)
    if upto == "filter":
        ds = ds.map_batches(_FilterWorker, fn_constructor_args=(*args, "filter"),
                            batch_size=CLIP_VIDEOS_PER_CALL, batch_format="numpy",
                            concurrency=eng.clip_actors, num_gpus=gpus["clip"] or None, num_cpus=1)
    build.reporter.start("videos", len(rows))
    t0 = time.perf_counter()
    for row in ds.iter_rows():
        job = _job(row)
        if row["error"]:
            build.set_status(job, "error", row["error"])
            build.reporter.log(f"[yellow]skipped[/] {escape(one_line(row['error']))}")
        else:
            build.set_status(job, "ok" if upto == "filter" else "partial")
        build.reporter.advance("videos")
    # Stage times are spent on the workers; the driver reports the pipeline's wall time.
    build.stage_seconds["ray pipeline"] = time.perf_counter() - t0
