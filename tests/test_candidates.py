"""`ground --candidates K`: ranked windows from scored samples (NMS, log-prob order), the runner's
scored sampling on the tiny Qwen2.5-VL, CLIP's ranked windows, and the rows `eval` scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scenetg.cli import main
from scenetg.errors import ConfigError
from scenetg.eval import baselines as B
from scenetg.eval.grounding import ground
from scenetg.eval.metrics import compute_metrics
from scenetg.eval.predictions import read_predictions
from scenetg.grounding.candidates import Candidate, nms, rank_candidates, window_iou
from scenetg.grounding.records import GroundingRecord


def _answer(s, e) -> str:
    return f"<think>x</think><answer>{s} - {e}</answer>"


def test_rank_candidates_orders_by_log_prob_and_drops_overlaps():
    outputs = [
        (_answer(10, 20), -5.0),  # greedy; IoU 9/11 with the better 11-21: dropped
        ("no answer here", -1.0),  # unparsable: dropped
        (_answer(11, 21), -3.0),
        (_answer(30, 40), -6.0),
        (_answer(30, 40), -7.0),  # an exact repeat
        (_answer(0, 2), -9.0),
        (_answer(15, 25), -6.0),  # IoU 6/14 with 11-21: kept, after 30-40 (a tie keeps order)
    ]
    kept = rank_candidates(outputs, k=5, nms_iou=0.5)
    assert [c.window for c in kept] == [(11.0, 21.0), (30.0, 40.0), (15.0, 25.0), (0.0, 2.0)]
    assert [c.score for c in kept] == [-3.0, -6.0, -6.0, -9.0]
    assert [c.window for c in rank_candidates(outputs, k=2)] == [(11.0, 21.0), (30.0, 40.0)]
    # nms_iou 0.9 keeps 10-20 (IoU 0.818) right after 11-21
    assert rank_candidates(outputs, k=2, nms_iou=0.9)[1].window == (10.0, 20.0)
    assert rank_candidates([("garbage", 0.0)], k=3) == []
    assert window_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert nms([Candidate((0, 1), 0, ""), Candidate((5, 3), 0, ""), Candidate((5, 3), 0, "")], 5) == [
        Candidate((0, 1), 0, ""), Candidate((5, 3), 0, "")]


def test_clip_ranked_windows_start_with_the_best_window():
    sims = np.array([0, 0, 1, 1, 0, 0, 0.5, 0.5, 0, 0], dtype=float)
    best = B.clip_best_window(sims, 10.0, scales=(0.2,), stride=0.5)
    ranked = B.clip_ranked_windows(sims, 10.0, k=3, nms_iou=0.0, scales=(0.2,), stride=0.5)
    assert ranked[0] == best and best[:2] == (2.0, 4.0)
    # windows of 2 frames every frame; with nms 0 no kept window overlaps another
    assert ranked[1][:2] == (6.0, 8.0)
    assert len(ranked) == 3 and all(window_iou(a[:2], b[:2]) == 0 for a in ranked for b in ranked if a != b)
    assert ranked[0][2] >= ranked[1][2] >= ranked[2][2]


class ScoredRunner:
    """Stands in for QwenRunner.sample_scored: per query, the greedy answer and K samples with
    fixed log-probs."""

    def __init__(self):
        self.calls = []

    def generate(self, videos, times_s, prompts, durations_s, max_new_tokens=None):
        return [_answer(10, 20)] * len(videos)

    def sample_scored(self, videos, times_s, prompts, durations_s, n, temperature, seed, max_new_tokens=None):
        self.calls.append({"n": n, "temperature": temperature, "seed": seed, "batch": len(videos)})
        pool = [(_answer(0.5, 1.5), -2.0), (_answer(0.6, 1.6), -1.0), (_answer(2, 3), -4.0),
                ("unparsable", -0.5), (_answer(3, 4), -3.0)]
        return [[pool[0]] + pool[1 : n + 1] for _ in videos]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    from scenetg.video.synthetic import write_synthetic_video

    root = tmp_path_factory.mktemp("videos")
    write_synthetic_video(root / "a.mp4", [2.0, 2.0], fps=10, size=(64, 48))
    return root


def test_ground_writes_ranked_candidates_and_eval_scores_them(video_dir, tmp_path, capsys):
    records = [GroundingRecord("q1", "a", 4.0, "a dark scene", [(2.0, 3.0)]),
               GroundingRecord("q2", "a", 4.0, "a bright scene", [(0.6, 1.6)])]
    out = tmp_path / "p.jsonl"
    runner = ScoredRunner()
    stats = ground(records, video_dir, out, model=runner, fps=2, max_frames=4, batch_size=2,
                   candidates=3, temperature=0.7, nms_iou=0.5, seed=5)
    assert stats.written == 2 and stats.parsed == 2
    assert runner.calls and {c["n"] for c in runner.calls} == {3}
    assert {c["temperature"] for c in runner.calls} == {0.7}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        # 0.6-1.6 (-1.0) beats the greedy 0.5-1.5 (-2.0, IoU 0.82: dropped), then 2-3 (-4.0)
        assert row["candidates"] == [[0.6, 1.6], [2.0, 3.0]] and row["pred"] == [0.6, 1.6]
        assert row["scores"] == [-1.0, -4.0] and row["raw"] == _answer(0.6, 1.6)
    m = compute_metrics(records, read_predictions(out), protocol="ego4d_nlq")
    assert m["R1@0.5"] == 50.0 and m["R5@0.5"] == 100.0
    # the same inputs and seed give the same sample seed per batch
    again = ScoredRunner()
    ground(records, video_dir, tmp_path / "p2.jsonl", model=again, fps=2, max_frames=4,
           batch_size=2, candidates=3, temperature=0.7, seed=5)
    assert [c["seed"] for c in again.calls] == [c["seed"] for c in runner.calls]


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "center", "candidates": 3}, "center has one window"),
    ({"candidates": 0}, "candidates must be an integer >= 1"),
    ({"candidates": 2, "temperature": float("nan")}, "temperature must be a finite number"),
    ({"candidates": 2, "nms_iou": 1.5}, r"nms IoU must be a number in \[0, 1\]"),
])
def test_ground_refuses_bad_candidate_settings(video_dir, tmp_path, kwargs, match):
    records = [GroundingRecord("q1", "a", 4.0, "x", [(0.0, 1.0)])]
    kwargs = {"model": ScoredRunner(), **kwargs}
    with pytest.raises(ConfigError, match=match):
        ground(records, video_dir, tmp_path / "p.jsonl", **kwargs)


def test_ground_cli_candidates_errors_are_one_line(tmp_path, capsys):
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": 1, "vid": "v", "duration": 10, "query": "a",
                               "relevant_windows": [[1, 2]]}) + "\n")
    base = ["ground", "-a", str(ann), "--videos", str(tmp_path), "--out", str(tmp_path / "p.jsonl")]
    for extra, text in ((["--method", "center", "--candidates", "3"], "center has one window"),
                        (["--method", "center", "--candidates", "0"], "--candidates: expected an integer >= 1"),
                        (["--method", "center", "--temperature", "nan"], "--temperature: expected a number")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and text in err, err


# ------------------------------------------------------------------ the real tiny model


@pytest.fixture(scope="module")
def tiny_runner(tmp_path_factory):
    from scenetg.models.runner import QwenRunner
    from scenetg.models.tiny import make_tiny_qwen

    folder = tmp_path_factory.mktemp("tiny") / "qwen"
    make_tiny_qwen(folder)
    return QwenRunner.load(str(folder), device="cpu", dtype="float32", max_new_tokens=6)


def _video():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(4)], [0.0, 1.0, 2.0, 3.0]


def test_sample_scored_log_prob_is_the_models_own(tiny_runner):
    """The greedy output's score equals the teacher-forced log-likelihood of its tokens, and
    its text equals `generate`'s; samples are seeded and leave torch's global RNG alone."""
    import torch

    from scenetg.models.qwen import batch_video_inputs

    frames, times = _video()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    out = tiny_runner.sample_scored([frames], [times], ["find the dog"], [4.0], n=3, seed=9)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG untouched
    assert len(out[0]) == 4
    greedy_text, greedy_score = out[0][0]
    assert greedy_text == tiny_runner.generate([frames], [times], ["find the dog"], [4.0])[0]
    assert all(score < 0 for _, score in out[0])

    inputs = batch_video_inputs(tiny_runner.processor, [frames], [times], ["find the dog"],
                                durations_s=[4.0], padding_side="left")
    model = tiny_runner.model
    with torch.inference_mode():
        gen = model.generate(**inputs, generation_config=tiny_runner.generation_config)
        new = gen[:, inputs["input_ids"].shape[1]:]
        full = dict(inputs)
        full["input_ids"] = gen
        full["attention_mask"] = torch.ones_like(gen)
        if "mm_token_type_ids" in full:
            full["mm_token_type_ids"] = torch.cat(
                [inputs["mm_token_type_ids"], torch.zeros_like(new)], dim=1)
        logits = model(**full).logits[:, inputs["input_ids"].shape[1] - 1 : -1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, new[..., None])[..., 0]
    eos = tiny_runner.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    ids = new[0].tolist()
    stop = next((i for i, t in enumerate(ids) if t in eos), len(ids) - 1)
    assert greedy_score == pytest.approx(float(logp[0, : stop + 1].sum()), abs=1e-3)

    again = tiny_runner.sample_scored([frames], [times], ["find the dog"], [4.0], n=3, seed=9)
    assert again == out
    other = tiny_runner.sample_scored([frames], [times], ["find the dog"], [4.0], n=3, seed=10)
    assert [t for t, _ in other[0][1:]] != [t for t, _ in out[0][1:]]


def test_sample_scored_sums_log_probs_up_to_the_first_end_token(tiny_runner):
    """A stand-in model returns fixed tokens and uniform logits (each token log(1/V)): a sequence
    that ends after 2 tokens scores 2·log(1/V), one that runs on scores 4·log(1/V)."""
    import math
    from types import SimpleNamespace

    import torch

    from scenetg.models.runner import QwenRunner

    real = tiny_runner.model
    eos = real.generation_config.eos_token_id
    eos = eos if isinstance(eos, int) else list(eos)[0]
    vocab = real.config.get_text_config().vocab_size

    class Fixed:
        device = real.device
        generation_config = real.generation_config

        def generate(self, input_ids, generation_config, **kw):
            rows = input_ids.shape[0] * generation_config.num_return_sequences
            new = torch.tensor([[5, eos, 0, 0], [5, 6, 7, 8]] * (rows // 2))
            prompt = input_ids.repeat_interleave(generation_config.num_return_sequences, 0)
            return SimpleNamespace(sequences=torch.cat([prompt, new], 1),
                                   logits=tuple(torch.zeros(rows, vocab) for _ in range(4)))

    runner = QwenRunner(Fixed(), tiny_runner.processor, max_new_tokens=4)
    frames, times = _video()
    out = runner.sample_scored([frames], [times], ["q"], [4.0], n=2, include_greedy=False)
    per_token = -math.log(vocab)
    assert [score for _, score in out[0]] == pytest.approx([2 * per_token, 4 * per_token])


def test_ground_candidates_through_the_real_tiny_model(tiny_runner, video_dir, tmp_path):
    """The sampling path with real video inputs (K return sequences per query): every row has a
    candidates list of at most K windows and pred equal to its first (the random tiny model
    rarely writes a parsable answer, so the list may be empty and pred null)."""
    records = [GroundingRecord("q1", "a", 4.0, "a dark scene", [(0.0, 2.0)]),
               GroundingRecord("q2", "a", 4.0, "a bright scene", [(2.0, 4.0)])]
    out = tmp_path / "p.jsonl"
    stats = ground(records, video_dir, out, model=tiny_runner, fps=2, max_frames=4,
                   batch_size=2, candidates=3, seed=1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert stats.written == 2 and len(rows) == 2
    for row in rows:
        assert isinstance(row["candidates"], list) and len(row["candidates"]) <= 3
        assert row["pred"] == (row["candidates"][0] if row["candidates"] else None)
        assert len(row["scores"]) == len(row["candidates"])
