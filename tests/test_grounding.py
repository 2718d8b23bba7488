"""Grounding inference: prompts and frame sampling, video lookup, the three methods, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scenetg.errors import ConfigError, ScenetgError
from scenetg.eval import baselines as B
from scenetg.eval import grounding as G
from scenetg.eval.ground_rows import read_done_rows
from scenetg.eval.predictions import read_predictions
from scenetg.grounding.parsing import parse_answer
from scenetg.grounding.prompts import (
    grounding_prompt,
    mcq_prompt,
    sample_video_times,
)
from scenetg.grounding.records import GroundingRecord
from scenetg.models.runner import QwenRunner
from scenetg.video.lookup import find_video
from scenetg.video.synthetic import write_synthetic_video

ANSWER = "<think>the person is there</think><answer>1.0 - 2.5</answer>"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two short synthetic videos: `a` (4 s) and a nested id `sub/b` (3 s)."""
    root = tmp_path_factory.mktemp("videos")
    write_synthetic_video(root / "a.mp4", [2.0, 2.0], fps=10, size=(64, 48))
    (root / "sub").mkdir()
    write_synthetic_video(root / "sub" / "b.mp4", [1.5, 1.5], fps=10, size=(64, 48), seed=1)
    return root


def _records(duration_a: float | None = 4.0) -> list[GroundingRecord]:
    return [
        GroundingRecord("q1", "a", duration_a, "a dark scene", [(0.0, 2.0)]),
        GroundingRecord("q2", "sub/b", 3.0, "a bright scene", [(1.5, 3.0)]),
        GroundingRecord("q3", "a", duration_a, "the box moves", [(2.0, 4.0)]),
        GroundingRecord("q4", "missing", 10.0, "nothing", [(1.0, 2.0)]),
    ]


class FakeRunner:
    """Stands in for QwenRunner: records what it was asked, answers with fixed text."""

    def __init__(self, text: str = ANSWER):
        self.text = text
        self.calls: list[dict] = []

    def generate(self, videos, times_s, prompts, durations_s, max_new_tokens=None):
        self.calls.append(
            {
                "n": len(videos),
                "frames": [len(v) for v in videos],
                "times": [list(t) for t in times_s],
                "prompts": list(prompts),
                "durations": list(durations_s),
            }
        )
        return [self.text] * len(videos)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------ prompts


def test_sample_video_times_fps_budget_and_start_at_zero():
    times = sample_video_times(10.0, fps=2.0, max_frames=100)
    assert len(times) == 20
    # i * D/k from 0: grid t of Qwen2.5-VL is read as time t * 2/fps from the first frame
    assert times[0] == 0.0 and times[-1] == pytest.approx(9.5)
    assert np.allclose(np.diff(times), 0.5)
    long = sample_video_times(3600.0, fps=2.0, max_frames=64)
    assert len(long) == 64  # capped, spread over the whole video
    assert long[0] == 0.0 and long[-1] == pytest.approx(3600 - 3600 / 64)
    assert np.allclose(np.diff(long), 3600 / 64)
    assert len(sample_video_times(10.0, fps=1.5, max_frames=100)) == 14  # 15 rounded to even
    assert len(sample_video_times(0.4, fps=2.0, max_frames=10)) == 2  # at least 2
    assert len(sample_video_times(10.0, fps=2.0, max_frames=1)) == 1
    assert len(sample_video_times(10.0, fps=1.5, max_frames=100, multiple_of=1)) == 15
    with pytest.raises(ValueError):
        sample_video_times(0.0)
    with pytest.raises(ValueError):
        sample_video_times(10.0, fps=0)


def test_prompts():
    p = grounding_prompt("a man  opens\nthe door", 125.04)
    assert '"a man opens the door"' in p and "125.0 seconds" in p
    assert "<think>" in p and "<answer>START - END</answer>" in p
    q = mcq_prompt("What colour?", ["red", "blue", "green"])
    assert "A. red\nB. blue\nC. green" in q and q.startswith("What colour?")
    with pytest.raises(ValueError):
        mcq_prompt("q", [])


# ------------------------------------------------------------------------------- videos


def test_find_video(videos, tmp_path):
    assert find_video(videos, "a") == videos / "a.mp4"
    assert find_video(videos, "sub/b") == videos / "sub" / "b.mp4"
    assert find_video(videos, "a.mp4") == videos / "a.mp4"
    assert find_video(videos, "nope") is None
    assert find_video(videos, "sub/nope") is None
    (tmp_path / "C D.MKV").write_bytes(b"x")
    (tmp_path / "E.Mov").write_bytes(b"x")
    (tmp_path / "F.txt").write_bytes(b"x")
    assert find_video(tmp_path, "C D") == tmp_path / "C D.MKV"
    assert find_video(tmp_path, "E") == tmp_path / "E.Mov"
    assert find_video(tmp_path, "F") is None


# ---------------------------------------------------------------------------- baselines


def test_center_window_and_auto_fraction(videos, tmp_path):
    assert B.center_window(10.0, 0.3) == pytest.approx((3.5, 6.5))
    recs = _records(duration_a=None)  # `a` has no duration: probed from the file
    out = tmp_path / "center.jsonl"
    stats = G.ground(recs, videos, out, method="center")
    preds = read_predictions(out)
    assert preds["q1"] == pytest.approx(B.center_window(4.0, B.DEFAULT_CENTER_FRACTION))
    assert preds["q2"] == pytest.approx((1.05, 1.95))
    assert preds["q4"] == pytest.approx((3.5, 6.5))  # duration known: no video needed
    assert stats.parsed == 4 and stats.written == 4 and stats.missing_videos == 0

    recs = _records()
    fraction = B.mean_relative_length(recs)
    assert fraction == pytest.approx(np.mean([0.5, 0.5, 0.5, 0.1]))
    out2 = tmp_path / "auto.jsonl"
    G.ground(recs, videos, out2, method="center", center_fraction="auto")
    assert read_predictions(out2)["q4"] == pytest.approx(B.center_window(10.0, fraction))
    with pytest.raises(ConfigError):
        G.ground(recs, videos, out2, method="center", center_fraction=1.5)


def test_clip_best_window_contrast_score():
    sims = np.zeros(40)
    sims[10:20] = 1.0
    s, e, score = B.clip_best_window(sims, 80.0, scales=(0.1, 0.25, 0.5), stride=0.25)
    assert (s, e) == pytest.approx((20.0, 40.0))  # frames 10..19 of 40, 2 s each
    assert score == pytest.approx(1.0)
    # a plain mean would tie every window inside the bump; the contrast picks the whole bump
    s, e, _ = B.clip_best_window(sims, 80.0, scales=(0.1, 0.25), stride=0.1)
    assert (s, e) == pytest.approx((20.0, 40.0))
    # a window covering every frame has no contrast (score 0)
    s, e, score = B.clip_best_window(np.ones(5), 5.0, scales=(1.0,))
    assert (s, e, score) == (0.0, 5.0, 0.0)
    # the last start is always tried even when the stride skips it
    sims = np.zeros(10)
    sims[7:10] = 1.0
    assert B.clip_best_window(sims, 10.0, scales=(0.3,), stride=1.0)[:2] == (7.0, 10.0)


def test_clip_method_with_tiny_clip(videos, tiny_models, tmp_path):
    out = tmp_path / "clip.jsonl"
    stats = G.ground(
        _records(),
        videos,
        out,
        method="clip",
        model=str(tiny_models["clip"]),
        fps=4,
        max_frames=32,
        device="cpu",
    )
    preds = read_predictions(out)
    assert set(preds) == {"q1", "q2", "q3", "q4"}
    assert preds["q4"] is None and stats.missing_videos == 1
    for qid, d in (("q1", 4.0), ("q2", 3.0), ("q3", 4.0)):
        s, e = preds[qid]
        assert 0.0 <= s < e <= d + 1e-9
    assert stats.parsed == 3 and stats.videos == 3
    with pytest.raises(ConfigError):
        G.ground(_records(), videos, tmp_path / "x.jsonl", method="clip")


# -------------------------------------------------------------------------------- model


def test_model_method_rows_batches_and_one_decode_per_video(videos, tmp_path, monkeypatch):
    from scenetg.video import frames as frames_mod

    decoded: list[tuple[str, int]] = []
    real = frames_mod.read_frames_at

    def counting(path, times_s, max_side=None):
        decoded.append((Path(path).name, len(times_s)))
        return real(path, times_s, max_side=max_side)

    monkeypatch.setattr(frames_mod, "read_frames_at", counting)
    runner = FakeRunner()
    out = tmp_path / "preds.jsonl"
    stats = G.ground(_records(), videos, out, model=runner, fps=2, max_frames=6, batch_size=2)

    assert sorted(decoded) == [("a.mp4", 6), ("b.mp4", 6)]  # once per video, all its queries
    assert [c["n"] for c in runner.calls] == [2, 1]  # q1+q3 (video a), then q2
    first = runner.calls[0]
    assert first["durations"] == [4.0, 4.0]
    assert first["times"][0] == pytest.approx(sample_video_times(4.0, 2, 6))
    assert first["prompts"][0] == grounding_prompt("a dark scene", 4.0)
    rows = {r["qid"]: r for r in _rows(out)}
    assert rows["q1"] == {"qid": "q1", "pred": [1.0, 2.5], "raw": ANSWER}
    assert rows["q4"]["pred"] is None and rows["q4"]["raw"].startswith("error: video not found")
    assert "missing" in rows["q4"]["raw"]
    assert stats.written == 4 and stats.parsed == 3 and stats.missing_videos == 1
    assert stats.invalid == 0 and stats.videos == 3
    assert "1 queries with no video file" in stats.summary()


def test_model_method_unparsable_and_broken_video(videos, tmp_path):
    broken = tmp_path / "vids"
    broken.mkdir()
    (broken / "a.mp4").write_bytes(b"not a video at all")
    (broken / "sub").mkdir()
    (broken / "sub" / "b.mp4").write_bytes((videos / "sub" / "b.mp4").read_bytes())
    out = tmp_path / "p.jsonl"
    stats = G.ground(_records(), broken, out, model=FakeRunner("I cannot tell."))
    rows = {r["qid"]: r for r in _rows(out)}
    assert rows["q2"] == {"qid": "q2", "pred": None, "raw": "I cannot tell."}
    assert rows["q1"]["raw"].startswith("error: a.mp4:")
    assert stats.video_errors == 2 and stats.invalid == 1 and stats.missing_videos == 1


def test_resume_limit_and_torn_line(videos, tmp_path):
    out = tmp_path / "p.jsonl"
    runner = FakeRunner()
    stats = G.ground(_records(), videos, out, model=runner, limit=2)
    assert stats.total == 2 and stats.written == 2
    assert {r["qid"] for r in _rows(out)} == {"q1", "q2"}

    with out.open("a") as fh:  # a kill in the middle of a write
        fh.write('{"qid": "q3", "pred": [1.0, ')
    stats = G.ground(_records(), videos, out, model=runner)
    assert stats.skipped == 2 and stats.written == 2  # q3 (torn) and q4 redone
    qids = [r["qid"] for r in _rows(out)]
    assert sorted(qids) == ["q1", "q2", "q3", "q4"]
    assert set(read_predictions(out)) == {"q1", "q2", "q3", "q4"}

    # error rows (missing video) are retried; finished ones are not
    n_calls = len(runner.calls)
    stats = G.ground(_records(), videos, out, model=runner)
    assert stats.skipped == 3 and stats.written == 1 and stats.missing_videos == 1
    assert len(runner.calls) == n_calls  # nothing left for the model
    assert read_predictions(out)["q4"] is None


def test_read_done_rows(tmp_path):
    p = tmp_path / "x.jsonl"
    assert read_done_rows(p) == {}
    p.write_text('{"qid": 1, "pred": null, "raw": "a"}\n\n{"qid": "2", "pred": [1, 2], "raw": "b"}')
    rows = read_done_rows(p)  # complete last row that lost its newline: kept, newline added
    assert set(rows) == {"1", "2"} and p.read_text().endswith("\n")
    p.write_text('not json\n{"qid": "2", "pred": null, "raw": ""}\n')
    with pytest.raises(ScenetgError, match=r"x.jsonl:1"):
        read_done_rows(p)


def test_ground_validates_before_loading(tmp_path, videos):
    with pytest.raises(ConfigError):
        G.ground(_records(), videos, tmp_path / "p.jsonl", method="nope")
    with pytest.raises(ConfigError):
        G.ground(_records(), videos, tmp_path / "p.jsonl", model=None)
    with pytest.raises(ConfigError):
        G.ground(_records(), videos, tmp_path / "p.jsonl", model=FakeRunner(), fps=0)


def test_model_method_with_tiny_qwen_and_time_encoding(videos, tiny_models, tmp_path, monkeypatch):
    from scenetg.models import qwen as qwen_mod

    seen = []
    real = qwen_mod.batch_video_inputs

    def spy(processor, videos_, times_s, prompts, **kw):
        inputs = real(processor, videos_, times_s, prompts, **kw)
        seen.append((list(map(len, times_s)), kw.get("durations_s"), inputs))
        return inputs

    monkeypatch.setattr("scenetg.models.runner.batch_video_inputs", spy)  # the runner's name for it
    runner = QwenRunner.load(tiny_models["qwen"], device="cpu", max_new_tokens=8)
    out = tmp_path / "p.jsonl"
    stats = G.ground(_records(), videos, out, model=runner, fps=2, max_frames=4, batch_size=3)
    assert stats.written == 4 and stats.videos == 3
    rows = {r["qid"]: r for r in _rows(out)}
    for qid in ("q1", "q2", "q3"):
        assert isinstance(rows[qid]["raw"], str)
        expected = parse_answer(rows[qid]["raw"])
        assert rows[qid]["pred"] == (None if expected is None else list(expected))
    # the processor got the real sampled fps: second_per_grid_ts = temporal_patch / (k / D)
    assert seen, "the spy saw no batch: the runner no longer builds inputs through it"
    for lengths, durations, inputs in seen:
        grid = inputs["second_per_grid_ts"].tolist()
        for k, d, spg in zip(lengths, durations, grid, strict=True):
            assert spg == pytest.approx(2 / (k / d), rel=1e-4)
    # greedy: a second run on another file gives the same text
    out2 = tmp_path / "p2.jsonl"
    G.ground(_records(), videos, out2, model=runner, fps=2, max_frames=4, batch_size=1)
    assert {r["qid"]: r["raw"] for r in _rows(out2)} == {q: r["raw"] for q, r in rows.items()}


def test_ids_that_leave_the_videos_folder_are_error_rows(videos, tmp_path, monkeypatch):
    """`../x` or `/abs/x` from an annotation file never opens a file outside --videos."""
    from scenetg.video import frames as frames_mod

    outside = videos.parent / "outside.mp4"
    write_synthetic_video(outside, [1.0, 1.0], fps=10, size=(64, 48))
    opened = []
    real = frames_mod.read_frames_at
    monkeypatch.setattr(frames_mod, "read_frames_at", lambda p, *a, **k: opened.append(Path(p)) or real(p, *a, **k))
    records = [
        GroundingRecord("up", "../outside", 2.0, "q", [(0.0, 1.0)]),
        GroundingRecord("abs", str(outside.with_suffix("")), 2.0, "q", [(0.0, 1.0)]),
        GroundingRecord("ok", "a", 4.0, "q", [(0.0, 2.0)]),
    ]
    out = tmp_path / "p.jsonl"
    G.ground(records, videos, out, model=FakeRunner(), fps=2, max_frames=4)
    rows = {r["qid"]: r for r in _rows(out)}
    assert rows["up"]["pred"] is None and "leaves the videos folder" in rows["up"]["raw"]
    assert rows["abs"]["pred"] is None and "absolute path" in rows["abs"]["raw"]
    assert outside not in opened and all(p.is_relative_to(videos) for p in opened)
    with pytest.raises(Exception, match="leaves"):
        find_video(videos, "sub/../../outside")
