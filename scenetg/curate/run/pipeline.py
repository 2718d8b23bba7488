"""`build(videos, out, config)`: the whole dataset build, and each stage alone on an `OUT/` folder.

Flow per video: shots (probe, shot detection, scene assembly) -> captions -> filter; then one
export of every finished video into Parquet. Stage results are stored per video in
`OUT/work/<key>/`, so `--resume` skips what is done and a crash loses at most the video in flight.
One bad video never stops the build: it gets `status=error` and the rest goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from scenetg.config import BuildConfig, build_config_from_dict
from scenetg.curate.run import keyframes, video_stages
from scenetg.curate.run.caption_batches import run_local
from scenetg.curate.run.engines import run_ray
from scenetg.curate.run.export_stage import BuildSummary, export_build
from scenetg.curate.run.workdir import (
    FORMAT_VERSION,
    MANIFEST,
    VideoJob,
    WorkDir,
    discover_videos,
    file_signature,
    fingerprint,
    lock_out,
    one_line,
)
from scenetg.errors import ScenetgError, VideoError
from scenetg.models.batch_size import resolve_clip_batch_size
from scenetg.models.clip import check_clip_available, load_clip
from scenetg.progress import Reporter

STAGES = ("shots", "captions", "filter")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("scenetg", "torch", "transformers", "open_clip_torch", "scenedetect", "av", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


class Models:
    """The build's models, loaded once, lazily: a resumed build with nothing to caption loads none."""

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        self._captioner = None
        self._clip = None

    def check_available(self, stages: tuple[str, ...] = ("captions", "filter")) -> None:
        """Fail fast (before any video work) on a model that is neither local nor reachable."""
        from scenetg.curate.stages.captions import check_caption_model  # deferred: pulls av

        if "captions" in stages:
            check_caption_model(self.cfg.captions)
        if "filter" in stages:
            check_clip_available(self.cfg.filter.clip_model)

    @property
    def captioner(self):
        if self._captioner is None:
            from scenetg.curate.stages.captions import make_caption_backend  # deferred: pulls av

            self._captioner = make_caption_backend(self.cfg.captions)
        return self._captioner

    @property
    def clip(self):
        if self._clip is None:

            clip = load_clip(self.cfg.filter.clip_model, device=self.cfg.filter.device)
            clip.batch_size = resolve_clip_batch_size(self.cfg.filter.batch_size, clip.device)
            self._clip = clip
        return self._clip


class Build:
    """State of one build folder: config, manifest, stage files; runs stages on videos."""

    def __init__(self, out_dir: Path, cfg: BuildConfig, videos_dir: Path, reporter: Reporter | None = None):
        self.work = WorkDir(out_dir)
        self.cfg = cfg
        self.videos_dir = Path(videos_dir).absolute()
        self.reporter = reporter or Reporter()
        self.models = Models(cfg)
        self.fp = {
            "shots": video_stages.shots_fingerprint(cfg),
            "captions": video_stages.captions_fingerprint(cfg),
            "filter": video_stages.filter_fingerprint(cfg),
        }
        self.stage_seconds: dict[str, float] = {s: 0.0 for s in (*STAGES, "export")}
        self.manifest: dict[str, Any] = {}
        self._saved_at = 0.0

    # ----- manifest -------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: Path, cfg: BuildConfig | None = None, reporter: Reporter | None = None) -> Build:
        """Re-open an existing build folder (for the stage commands), config from its manifest."""
        manifest = WorkDir(out_dir).require_manifest()
        cfg = cfg or build_config_from_dict(manifest["config"])
        build = cls(out_dir, cfg, Path(manifest["videos_dir"]), reporter)
        build.manifest = manifest
        return build

    def init_manifest(self, jobs: list[VideoJob], resume: bool) -> None:
        old = self.work.load_manifest() if resume else None
        old_videos = (old or {}).get("videos", {})
        videos = {}
        for job in jobs:
            prev = old_videos.get(job.video_id, {})
            videos[job.video_id] = {
                "rel_path": job.rel_path,
                "key": job.key,
                "status": prev.get("status", "pending") if resume else "pending",
                "error": prev.get("error") if resume else None,
            }
        self.manifest = {
            "format_version": FORMAT_VERSION,
            "videos_dir": str(self.videos_dir),
            "config": self.cfg.to_dict(),
            "versions": _versions(),
            "videos": videos,
            "counts": {},
        }
        self.save_manifest()

    def save_manifest(self) -> None:
        self.manifest["config"] = self.cfg.to_dict()
        self.work.save_manifest(self.manifest)
        self._saved_at = time.monotonic()

    def jobs(self) -> list[VideoJob]:
        return [
            VideoJob(vid, v["rel_path"], self.videos_dir / v["rel_path"], v["key"])
            for vid, v in sorted(self.manifest["videos"].items())
        ]

    def set_status(self, job: VideoJob, status: str, error: str | None = None) -> None:
        """Record a video's status; the manifest is rewritten at most every n_videos/1000 s.

        Throttled so a 100k-video build does not rewrite a large manifest per video; a status
        lost in a crash costs nothing, since `is_done` trusts only the stage files.
        """
        entry = self.manifest["videos"][job.video_id]
        entry["status"], entry["error"] = status, one_line(error) if error else error
        if time.monotonic() - self._saved_at >= min(5.0, len(self.manifest["videos"]) / 1000):
            self.save_manifest()

    # ----- stages on one video --------------------------------------------------------------
    def _timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.stage_seconds[stage] += time.perf_counter() - t0

    def stage_fp(self, job: VideoJob, stage: str, *upstream: Any) -> str:
        """A stage file's fingerprint: its config, the video file's identity, its inputs.

        So `--resume` never trusts a result made from another config, a replaced video file,
        or scenes/captions that have since changed.
        """
        return fingerprint([self.fp[stage], file_signature(job.path), *upstream])

    def shots(self, job: VideoJob, resume: bool = True) -> dict[str, Any]:
        fp = self.stage_fp(job, "shots")
        cached = self.work.read_stage(job.key, "shots", fp) if resume else None
        if cached is not None:
            return cached
        result = self._timed("shots", lambda: video_stages.run_shots(job.path, self.cfg))
        self.work.write_stage(job.key, "shots", fp, result)
        return result

    def captions(self, job: VideoJob, shots: dict[str, Any], resume: bool = True) -> dict[str, Any]:
        fp = self.stage_fp(job, "captions", shots["scenes"])
        cached = self.work.read_stage(job.key, "captions", fp) if resume else None
        if cached is not None:
            self.reporter.advance("captions", len(cached["captions"]))
            return cached
        # Per-scene cache keyed without the scenes: an unchanged scene keeps its caption.
        cache = video_stages.CaptionCache(self.work.video_dir(job.key) / "captions.jsonl", self.stage_fp(job, "captions"))

        def run() -> dict[str, Any]:
            captioner = self.models.captioner
            # The same decode pass keeps the filter's frames (one keyframe pass per video).
            request = keyframes.filter_request(
                shots, self.cfg.filter.frames_per_scene, self.cfg.filter.clip_model,
                self.models._clip,
            )
            kept: list = []
            texts = video_stages.run_captions(
                job.path, shots["scenes"], captioner, self.cfg, cache,
                on_scenes_done=lambda n: self.reporter.advance("captions", n),
                keep_filter_frames=(*request, kept) if request else None,
            )
            if request and kept and len(kept) == len(request[0]):
                keyframes.KeyframeStore(self._keyframes_dir(job)).save(job.path, *request, kept)
            return {"model": captioner.model_name, "captions": texts}

        result = self._timed("captions", run)
        self.work.write_stage(job.key, "captions", fp, result)
        return result

    def filter(self, job: VideoJob, shots: dict[str, Any], captions: dict[str, Any], resume: bool = True) -> dict[str, Any]:
        fp = self.stage_fp(job, "filter", shots["scenes"], captions["captions"])
        cached = self.work.read_stage(job.key, "filter", fp) if resume else None
        if cached is not None:
            return cached

        store = keyframes.KeyframeStore(self._keyframes_dir(job))

        def run() -> dict[str, Any]:
            clip = self.models.clip
            request = keyframes.filter_request(shots, self.cfg.filter.frames_per_scene, "", clip)
            stored = store.load(job.path, *request) if request else None
            figures = video_stages.run_filter(
                job.path, shots["scenes"], captions["captions"], clip, self.cfg, stored_frames=stored,
                video=shots.get("video"),
            )
            return {"clip_model": clip.name, "figures": figures}

        result = self._timed("filter", run)
        self.store_filter(job, fp, result)
        return result

    def store_filter(self, job: VideoJob, fp: str, result: dict[str, Any]) -> None:
        """Write a video's filter result; its kept keyframes go (only the filter reads them; a
        re-filter decodes again)."""
        self.work.write_stage(job.key, "filter", fp, result)
        keyframes.KeyframeStore(self._keyframes_dir(job)).clear()

    def _keyframes_dir(self, job: VideoJob) -> Path:
        return self.work.video_dir(job.key) / "keyframes"

    def stored_results(self, job: VideoJob) -> tuple[dict | None, dict | None, dict | None]:
        """The video's current shots, captions and filter results (None where missing/stale)."""
        shots = self.work.read_stage(job.key, "shots", self.stage_fp(job, "shots"))
        if shots is None:
            return None, None, None
        captions = self.work.read_stage(job.key, "captions", self.stage_fp(job, "captions", shots["scenes"]))
        if captions is None:
            return shots, None, None
        figures = self.work.read_stage(
            job.key, "filter", self.stage_fp(job, "filter", shots["scenes"], captions["captions"])
        )
        return shots, captions, figures

    def process_video(self, job: VideoJob, upto: str = "filter", resume: bool = True) -> None:
        """Run the stages up to `upto` on one video; a bad video is recorded, not raised."""
        try:
            shots = self.shots(job, resume)
            if upto in ("captions", "filter"):
                self.reporter.grow("captions", len(shots["scenes"]))
                captions = self.captions(job, shots, resume)
                if upto == "filter":
                    self.filter(job, shots, captions, resume)
        except VideoError as exc:
            self.set_status(job, "error", str(exc))
            self.reporter.log(f"[yellow]skipped[/] {escape(one_line(str(exc)))}")
            return
        except (ScenetgError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one broken video must not stop the build
            msg = f"{one_line(job.rel_path)}: {type(exc).__name__}: {exc}".splitlines()[0]
            self.set_status(job, "error", msg)
            self.reporter.log(f"[red]failed[/] {escape(msg)}")
            return
        done = upto == "filter"
        self.set_status(job, "ok" if done else "partial", None)

    def is_done(self, job: VideoJob, upto: str) -> bool:
        """Finished up to `upto` with results that are still current (same config and file).

        Failed videos are not done: a resumed build retries them (cheap for a file that is
        still bad, and right for one the user has fixed).
        """
        if self.manifest["videos"][job.video_id]["status"] not in ("ok", "partial"):
            return False
        return all(r is not None for r in self.stored_results(job)[: STAGES.index(upto) + 1])

    def run_videos(self, upto: str, resume: bool) -> None:
        """Run the per-video stages on every video of the manifest (the local engine)."""
        jobs = self.jobs()
        if resume:
            jobs = [j for j in jobs if not self.is_done(j, upto)]
        if self.cfg.engine.name == "ray":

            run_ray(self, jobs, upto)
            self.save_manifest()
            return

        run_local(self, jobs, upto, resume)  # captions batched across videos, decode ahead
        self.save_manifest()

    # ----- export ---------------------------------------------------------------------------
    def export(self) -> BuildSummary:
        """Write videos.parquet, scenes.parquet, data/, audit/ and the card from the stage files."""
        summary = self._timed("export", lambda: export_build(self))
        summary.stage_seconds = {k: round(v, 2) for k, v in self.stage_seconds.items()}
        return summary


def build(
    videos_dir: Path,
    out_dir: Path,
    cfg: BuildConfig,
    resume: bool = False,
    reporter: Reporter | None = None,
    overwrite: bool = False,
) -> BuildSummary:
    """The whole build: discover videos, check models, run the stages, export Parquet + card.

    Holds the lock on `out_dir` throughout (a second build there fails at once). A folder that
    holds a finished dataset is refused unless `resume` (continue / update it) or `overwrite`
    (build it again from scratch, replacing its data).
    """
    jobs = _discover(videos_dir, cfg, reporter)
    with lock_out(out_dir):
        if not (resume or overwrite):
            refuse_finished_dataset(Path(out_dir))
        b = Build(Path(out_dir), cfg, Path(videos_dir), reporter)
        b.models.check_available()
        b.init_manifest(jobs, resume)
        b.run_videos("filter", resume)
        return b.export()


def refuse_finished_dataset(out: Path) -> None:
    """ScenetgError when `out` holds a finished build (its manifest and data shards): a build
    without --resume would replace that data, silently."""
    shards = sorted(p.name for p in (out / "data").glob("*.parquet")) if (out / "data").is_dir() else []
    if (out / MANIFEST).is_file() and shards:
        raise ScenetgError(
            f"{out}: holds a finished dataset ({MANIFEST}, data/ with {len(shards)} shard(s)); pass "
            f"--resume to continue or update it, --overwrite to build it again from scratch, or "
            f"another --out"
        )


def export_folder(out_dir: Path, reporter: Reporter | None = None) -> BuildSummary:
    """`scenetg export`: the export stage alone on a build folder, under its lock."""
    WorkDir(out_dir).require_manifest()
    with lock_out(out_dir):
        return Build.open(Path(out_dir), reporter=reporter).export()


def _discover(videos_dir: Path, cfg: BuildConfig, reporter: Reporter | None) -> list[VideoJob]:
    warn = (reporter or Reporter()).log
    jobs = discover_videos(Path(videos_dir), cfg.extensions, lambda m: warn(f"[yellow]warning[/] {escape(m)}"))
    if not jobs:
        raise ScenetgError(f"{videos_dir}: no videos found (extensions: {', '.join(cfg.extensions)})")
    return jobs


def run_stage(
    out_dir: Path,
    stage: str,
    cfg: BuildConfig,
    videos_dir: Path | None = None,
    resume: bool = True,
    reporter: Reporter | None = None,
) -> Build:
    """One stage alone on a build folder (`scenetg shots|captions|filter`).

    `shots` starts the folder from `videos_dir`; the later stages re-open it and run on every
    video not yet done up to `stage` (with `cfg`, e.g. the manifest's config plus overrides).
    """
    if stage == "shots":
        if videos_dir is None:
            raise ScenetgError("the shots stage needs --videos")
        jobs = _discover(videos_dir, cfg, reporter)
    else:
        WorkDir(out_dir).require_manifest()
    with lock_out(out_dir):
        if stage == "shots":
            b = Build(Path(out_dir), cfg, Path(videos_dir), reporter)
            b.init_manifest(jobs, resume)
        else:
            b = Build.open(Path(out_dir), cfg, reporter)
            b.models.check_available((stage,))
        b.run_videos(stage, resume)
    return b
