"""Batches that fill the GPU: `batch_size: auto`, the prefetch thread, batches across videos."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from scenetg.cli import main
from scenetg.config import load_build_config
from scenetg.errors import ConfigError
from scenetg.eval import answering as A
from scenetg.eval import grounding as G
from scenetg.grounding.records import GroundingRecord
from scenetg.models.batch_size import (
    AUTO_MAX,
    CPU_BATCH_SIZE,
    resolve_batch_size,
    resolve_clip_batch_size,
    visual_tokens,
)
from scenetg.prefetch import Prefetch
from scenetg.video.synthetic import write_synthetic_video

ANSWER = "<think>x</think><answer>1.0 - 2.0</answer>"


# ------------------------------------------------------------------------------ batch size


class _Cfg:
    num_hidden_layers = 28
    hidden_size = 3584


class _Model:
    config = _Cfg()
    device = "cpu"


def test_explicit_batch_size_wins_and_auto_is_4_on_cpu():
    assert resolve_batch_size(12, _Model(), 10_000) == 12
    assert resolve_batch_size("auto", _Model(), 700) == CPU_BATCH_SIZE
    assert resolve_clip_batch_size(16, "cpu") == 16


def test_auto_on_a_gpu_follows_free_memory_and_item_tokens():
    gb = 1_000_000_000
    # The measured captions point: ~700 tokens per scene, 5.2 GB over the weights at batch 32.
    assert resolve_batch_size("auto", _Model(), 700, free_bytes=int(6.6 * gb)) == 31
    # Grounding 128 frames (~9.6k tokens) on what an H200 has left after 16.6 GB of weights.
    assert resolve_batch_size("auto", _Model(), 9_600, free_bytes=122 * gb) == AUTO_MAX
    assert resolve_batch_size("auto", _Model(), 9_600, free_bytes=40 * gb) == 13
    assert resolve_batch_size("auto", _Model(), 9_600, free_bytes=1 * gb) == 1  # never 0
    assert visual_tokens(8, 252, 448) == 4 * 9 * 16


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("AUTO", "auto"), ("8", 8), (8, 8)])
def test_config_accepts_auto_and_numbers(value, expected):
    cfg = load_build_config(None, {"captions.batch_size": value, "filter.batch_size": value})
    assert cfg.captions.batch_size == expected and cfg.filter.batch_size == expected


def test_shipped_default_is_auto():
    assert load_build_config(None, {}).captions.batch_size == "auto"


@pytest.mark.parametrize("command", ["ground", "answer"])
def test_cli_bad_batch_size_is_one_line_exit_2(command, tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text("")
    args = {
        "ground": ["ground", "-a", str(tmp_path / "a.jsonl"), "--videos", str(tmp_path),
                   "--out", str(tmp_path / "p.jsonl"), "--model", "m"],
        "answer": ["answer", "--qa", str(tmp_path / "a.jsonl"), "--videos", str(tmp_path),
                   "--out", str(tmp_path / "p.jsonl"), "--answerer", "m"],
    }[command]
    code = main([*args, "--batch-size", "lots"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == ["error: --batch-size: expected 'auto' or an integer >= 1, got 'lots'"]


def test_eval_suite_batch_size_is_coerced():
    from scenetg.eval.suite import EvalConfig

    with pytest.raises(ConfigError, match="batch_size: expected 'auto'"):
        EvalConfig(model="m", batch_size=0).validate()


# -------------------------------------------------------------------------------- prefetch


def test_prefetch_keeps_order_and_stays_bounded():
    made: list[int] = []

    def source():
        for i in range(20):
            made.append(i)
            yield i

    seen = []
    with Prefetch(source(), capacity=3) as items:
        for item in items:
            time.sleep(0.002)
            # Made but not yet seen: the item in hand, the buffer, and one waiting to go in.
            assert len(made) - len(seen) <= 1 + 3 + 1
            seen.append(item)
    assert seen == list(range(20))


def test_prefetch_raises_the_producers_error_in_the_consumer():
    def source():
        yield 1
        raise ValueError("decode failed at item 2")

    with Prefetch(source(), capacity=2) as items:
        got = []
        with pytest.raises(ValueError, match="decode failed at item 2"):
            for item in items:
                got.append(item)
    assert got == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    pre = Prefetch(endless(), capacity=2)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the consumer's loop
        with pre:
            for item in pre:
                if item == 5:
                    raise KeyboardInterrupt
    assert not pre.alive and closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "scenetg-prefetch"]


# ------------------------------------------------------------------------------- grounding


class RecordingRunner:
    def __init__(self, text: str = ANSWER):
        self.text = text
        self.calls: list[list[tuple[int, float]]] = []

    def generate(self, videos, times_s, prompts, durations_s, max_new_tokens=None):
        self.calls.append([(len(v), d) for v, d in zip(videos, durations_s, strict=True)])
        return [self.text] * len(videos)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Short clips of three lengths, listed short, long, short, long, mid."""
    root = tmp_path_factory.mktemp("clips")
    for name, secs in [("s1", 2.0), ("l1", 6.0), ("s2", 2.0), ("l2", 6.0), ("m1", 4.0)]:
        write_synthetic_video(root / f"{name}.mp4", [secs / 2, secs / 2], fps=8, size=(64, 48))
    return root


def _grounding_records() -> list[GroundingRecord]:
    lengths = {"s1": 2.0, "l1": 6.0, "s2": 2.0, "l2": 6.0, "m1": 4.0}
    return [GroundingRecord(f"{v}-q", v, d, "a scene", [(0.0, 1.0)]) for v, d in lengths.items()]


def test_ground_batches_span_videos_and_group_similar_sizes(clips, tmp_path):
    runner = RecordingRunner()
    out = tmp_path / "p.jsonl"
    G.ground(_grounding_records(), clips, out, model=runner, fps=1, max_frames=8, batch_size=2)
    # One query per video, yet full batches of two videos each, the long ones together.
    assert [len(c) for c in runner.calls] == [2, 2, 1]
    assert [[d for _, d in c] for c in runner.calls] == [[6.0, 6.0], [4.0, 2.0], [2.0]]
    assert {json.loads(line)["qid"] for line in out.read_text().splitlines()} == {
        r.qid for r in _grounding_records()
    }


# -------------------------------------------------------------------------------- answering


class FakeMLLM(RecordingRunner):
    def generate(self, videos, times_s, prompts, durations_s, max_new_tokens=None):
        super().generate(videos, times_s, prompts, durations_s, max_new_tokens)
        return [ANSWER if "<answer>" in p else "B" for p in prompts]


def _qa_records() -> list[A.QARecord]:
    return [
        A.QARecord(qid=f"{v}-1", video_id=v, question="Which?", options=["x", "y"],
                   answer_index=1, duration_group="short")
        for v in ("s1", "l1", "s2", "l2", "m1")
    ]


def test_answer_batches_across_videos_and_resumes(clips, tmp_path):
    mllm = FakeMLLM()
    out = tmp_path / "qa.jsonl"
    summary = A.answer(_qa_records()[:3], clips, out, mllm, batch_size=4, fps=1, max_frames=8)
    assert summary["n"] == 3 and summary["accuracy_gta"] == 100.0
    # Grounding: the three videos' questions in one call (was one call per video).
    assert len(mllm.calls[0]) == 3
    # Answering: 2 items per question (GtA + uniform), 6 items in batches of 4 across videos.
    assert [len(c) for c in mllm.calls[1:]] == [4, 2]
    resumed = FakeMLLM()
    A.answer(_qa_records(), clips, out, resumed, batch_size=4, fps=1, max_frames=8)
    assert len(resumed.calls[0]) == 2  # only the two new questions are grounded
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["qid"] for r in rows) == sorted(r.qid for r in _qa_records())


# -------------------------------------------------------------------------------- captions


def _demo_config(models: dict[str, Path], batch_size):
    cfg_path = Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml"
    return load_build_config(cfg_path, {
        "captions.model": str(models["qwen"]), "filter.clip_model": str(models["clip"]),
        "captions.batch_size": batch_size,
    })


@pytest.mark.slow
def test_build_captions_batches_span_videos_and_equal_the_per_video_path(
    tmp_path, tiny_models, monkeypatch
):
    from scenetg.curate.run.pipeline import Build, build
    from scenetg.curate.run.workdir import discover_videos
    from scenetg.curate.stages.captions import TransformersCaptioner

    videos = tmp_path / "videos"
    videos.mkdir()
    for i, durations in enumerate([[2.0, 1.5], [1.5, 2.0], [2.0, 2.0], [1.5, 1.5]]):
        write_synthetic_video(videos / f"v{i}.mp4", durations, 24.0, size=(160, 96), seed=i)

    calls: list[list[str]] = []
    real = TransformersCaptioner.caption_scenes

    def recording(self, scenes):
        calls.append([s.times_s[0] for s in scenes])
        return real(self, scenes)

    monkeypatch.setattr(TransformersCaptioner, "caption_scenes", recording)
    cfg = _demo_config(tiny_models, 3)
    build(videos, tmp_path / "cross", cfg)
    n_scenes = sum(len(c) for c in calls)
    # Batches of 3 over videos of ~2 scenes: every call but the last is full.
    assert [len(c) for c in calls[:-1]] == [3] * (len(calls) - 1) and n_scenes > 3

    # The per-video path (as Ray workers run it): one video's scenes per batch.
    per_video = Build(tmp_path / "per_video", cfg, videos)
    jobs = discover_videos(videos, cfg.extensions, lambda m: None)
    per_video.init_manifest(jobs, resume=False)
    for job in per_video.jobs():
        per_video.process_video(job)
    per_video.export()
    for name in ("audit", "data"):
        cross = sorted((tmp_path / "cross" / name).rglob("*.parquet"))
        alone = sorted((tmp_path / "per_video" / name).rglob("*.parquet"))
        assert cross and [p.read_bytes() for p in cross] == [p.read_bytes() for p in alone]


# ------------------------------------------------------------------------------ decode modes


@pytest.mark.slow
def test_decode_modes_give_the_same_greedy_text(tiny_models, tmp_path):
    from scenetg.grounding.samples import (
        FrameSampling,
        GroundingInput,
        generate_grounding,
        sample_video,
    )
    from scenetg.models.qwen import load_qwen
    from scenetg.models.runner import QwenRunner

    write_synthetic_video(tmp_path / "a.mp4", [2.0, 2.0], fps=8, size=(64, 48))
    video = sample_video(tmp_path / "a.mp4", 4.0, FrameSampling(2, 8, 64))
    items = [GroundingInput(video, "a scene"), GroundingInput(video, "the other scene, please")]
    model, processor = load_qwen(tiny_models["qwen"], device="cpu")
    texts = {}
    for mode in ("plain", "no-cudnn", "static"):
        runner = QwenRunner(model, processor, 16, decode=mode)
        texts[mode] = generate_grounding(runner, items)
    assert QwenRunner(model, processor, 16, decode="static").generation_config.cache_implementation == "static"
    assert QwenRunner(model, processor, 16).decode == "plain"  # auto on a CPU
    assert texts["no-cudnn"] == texts["plain"] and texts["static"] == texts["plain"]
    assert all(texts["plain"])


def test_bad_decode_mode_fails_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="decode must be one of auto, no-cudnn, static, plain"):
        G.ground(_grounding_records(), tmp_path, tmp_path / "p.jsonl", model="not/loaded",
                 decode="fast")


class _FakeCaptioner:
    """Captions from each scene's first time; raises on scenes of `bad_duration` or on call
    `interrupt_on` (Ctrl-C)."""

    model_name = "fake-captioner"

    def __init__(self, bad_duration: float | None = None, interrupt_on: int | None = None):
        self.bad_duration, self.interrupt_on = bad_duration, interrupt_on
        self.calls = 0

    def batch_size(self, scene) -> int:
        return 3

    def caption_scenes(self, scenes):
        self.calls += 1
        if self.calls == self.interrupt_on:
            raise KeyboardInterrupt
        if any(abs(s.duration_s - (self.bad_duration or -1)) < 0.05 for s in scenes):
            raise RuntimeError("CUDA error: an illegal memory access")
        return [f"scene at {s.times_s[0]:.2f} s" for s in scenes]


def _short_clips(folder: Path) -> Path:
    folder.mkdir()
    for i, durations in enumerate([[2.0, 1.5], [1.5, 2.0], [3.0, 3.0], [2.0, 2.0]]):
        write_synthetic_video(folder / f"v{i}.mp4", durations, 24.0, size=(160, 96), seed=i)
    return folder


def _queries(out: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    table = pq.read_table(sorted((out / "audit").rglob("*.parquet"))[0])
    return sorted(zip(table["video_id"].to_pylist(), table["query"].to_pylist(), strict=True))


@pytest.mark.slow
def test_a_batch_that_fails_fails_only_the_video_that_broke_it(tmp_path, tiny_models, monkeypatch):
    from scenetg.curate.run.pipeline import build
    from scenetg.curate.stages import captions

    videos = _short_clips(tmp_path / "videos")
    monkeypatch.setattr(captions, "make_caption_backend", lambda cfg: _FakeCaptioner(bad_duration=3.0))
    summary = build(videos, tmp_path / "out", _demo_config(tiny_models, "auto"))
    assert summary.videos_ok == 3 and list(summary.errors) == ["v2"]
    assert "RuntimeError: CUDA error" in summary.errors["v2"]
    assert {v for v, _ in _queries(tmp_path / "out")} == {"v0", "v1", "v3"}


@pytest.mark.slow
def test_ctrl_c_mid_build_stops_the_prefetch_thread_and_resume_finishes_the_same(
    tmp_path, tiny_models, monkeypatch
):
    from scenetg.curate.run.pipeline import build
    from scenetg.curate.stages import captions

    videos = _short_clips(tmp_path / "videos")
    cfg = _demo_config(tiny_models, "auto")
    monkeypatch.setattr(captions, "make_caption_backend", lambda cfg: _FakeCaptioner())
    build(videos, tmp_path / "whole", cfg)

    monkeypatch.setattr(captions, "make_caption_backend", lambda cfg: _FakeCaptioner(interrupt_on=2))
    with pytest.raises(KeyboardInterrupt):
        build(videos, tmp_path / "cut", cfg)
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "scenetg-prefetch"]
    # The first batch (3 scenes over 2 videos) was stored before the interrupt.
    assert any((tmp_path / "cut" / "work").rglob("captions.jsonl"))

    monkeypatch.setattr(captions, "make_caption_backend", lambda cfg: _FakeCaptioner())
    build(videos, tmp_path / "cut", cfg, resume=True)
    assert _queries(tmp_path / "cut") == _queries(tmp_path / "whole")
    for name in ("audit", "data"):
        cut = sorted((tmp_path / "cut" / name).rglob("*.parquet"))
        whole = sorted((tmp_path / "whole" / name).rglob("*.parquet"))
        assert [p.read_bytes() for p in cut] == [p.read_bytes() for p in whole]
