"""The toy grounding benchmark's task generator and its SFT through `scenetg train --algo sft`
(benchmarks/toy_grounding)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from toy_grounding.sft import SAMPLING, load_videos, sft_config, train_sft  # noqa: E402

from scenetg.toy_task import (  # noqa: E402
    CELLS,
    DURATIONS_S,
    MIN_LUMA_STEP,
    PALETTE,
    answer_text,
    luma,
    make_split,
    make_video_spec,
    split_specs,
)


def test_video_specs_unique_colours_cell_boundaries_and_brightness_steps():
    rng = np.random.default_rng(3)
    for i in range(300):
        spec = make_video_spec(rng, f"v{i}")
        assert spec.duration_s in DURATIONS_S
        assert 4 <= len(spec.colours) <= 6
        assert len(set(spec.colours)) == len(spec.colours)  # a colour names one scene
        cell = spec.duration_s / CELLS
        assert spec.bounds_s[0] == 0 and spec.bounds_s[-1] == spec.duration_s
        assert all(b % cell == 0 for b in spec.bounds_s)
        assert all(a < b for a, b in zip(spec.bounds_s, spec.bounds_s[1:], strict=False))
        for a, b in zip(spec.colours, spec.colours[1:], strict=False):
            assert abs(luma(PALETTE[a]) - luma(PALETTE[b])) >= MIN_LUMA_STEP


def test_answer_text_is_what_the_grounding_parser_reads():
    from scenetg.grounding.parsing import parse_answer

    text = answer_text(12.0, 18.0)
    assert text == "<think></think><answer>12 - 18</answer>"
    assert parse_answer(text) == (12.0, 18.0)


@pytest.fixture(scope="module")
def toy_split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("toy"), "train", 3, 2, seed=5)


def test_split_is_seeded_readable_by_the_loaders_and_answers_match_the_pixels(toy_split, tmp_path):
    from scenetg.grounding.loaders import load_annotations
    from scenetg.video.frame_cache import FrameCache

    again = make_split(tmp_path, "train", 3, 2, seed=5)
    assert again.rows == toy_split.rows  # same seed, same task
    replay = [(spec, c) for spec, cs in split_specs("train", 3, 2, seed=5) for c in cs]
    assert [r["qid"] for r in toy_split.rows] == [f"{spec.vid}_{c}" for spec, c in replay]
    assert [r["relevant_windows"][0] for r in toy_split.rows] == [list(spec.span(c)) for spec, c in replay]
    records, _ = load_annotations(toy_split.jsonl, videos_dir=toy_split.videos)
    assert len(records) == 6 and len({r.qid for r in records}) == 6
    cache = FrameCache(tmp_path / "frames")
    videos = load_videos(toy_split.rows, toy_split.videos, cache)
    assert cache.misses == 3 and cache.hits == 0
    for row in toy_split.rows:
        video = videos[row["vid"]]
        d = row["duration"]
        assert video.times_s == [i * d / 16 for i in range(16)]  # the trainer's sampling
        assert all(f.dtype == np.uint8 and f.shape == (36, 64, 3) for f in video.frames)
        (s, e), = row["relevant_windows"]
        assert s % (d / CELLS) == 0 and e % (d / CELLS) == 0
        colour = np.array(PALETTE[row["query"].split()[1]], dtype=float)
        inside = [f for f, t in zip(video.frames, video.times_s, strict=False) if s <= t < e]
        outside = [f for f, t in zip(video.frames, video.times_s, strict=False) if not s <= t < e]
        assert inside and outside
        assert all(np.abs(f.reshape(-1, 3).mean(0) - colour).max() < 20 for f in inside)
        assert all(np.abs(f.reshape(-1, 3).mean(0) - colour).max() > 20 for f in outside)
    load_videos(toy_split.rows, toy_split.videos, cache)
    assert cache.hits == 3 and cache.misses == 3  # second pass reads the uint8 cache


def test_sft_labels_cover_only_the_answer_and_inputs_match_grounding(toy_split, tiny_models, tmp_path):
    from transformers import AutoProcessor

    from scenetg.grounding.samples import GroundingInput
    from scenetg.models.qwen import video_inputs
    from scenetg.rl.sft import VideoSFTCollator
    from scenetg.rl.sft_config import answer_decimals
    from scenetg.rl.train_data import load_training_data
    from scenetg.video.frame_cache import FrameCache

    processor = AutoProcessor.from_pretrained(tiny_models["qwen"])
    videos = load_videos(toy_split.rows, toy_split.videos, FrameCache(tmp_path / "f"))
    cfg = sft_config(tiny_models["qwen"], tmp_path / "run", toy_split, 1, 2, 1e-3, 0, 1, None)
    rows = load_training_data(cfg.data).rows[:3]  # what `scenetg train` reads from the split's JSONL
    assert [r["qid"] for r in rows] == [r["qid"] for r in toy_split.rows[:3]]
    collator = VideoSFTCollator(processor, SAMPLING, FrameCache(tmp_path / "f"), answer_decimals(cfg.sft))
    items = [GroundingInput(videos[r["vid"]], r["query"]) for r in toy_split.rows[:3]]
    answers = [answer_text(*r["relevant_windows"][0]) for r in toy_split.rows[:3]]
    batch = collator(rows)
    tok = processor.tokenizer
    for i, (item, answer) in enumerate(zip(items, answers, strict=False)):
        labels = batch["labels"][i]
        kept = labels != -100
        assert tok.decode(labels[kept]) == answer + tok.eos_token
        # the labelled tokens are one contiguous run ending at the last real token
        idx = kept.nonzero().flatten()
        n = int(batch["attention_mask"][i].sum())
        assert idx.tolist() == list(range(n - len(idx), n))
        # the prompt part is exactly what grounding feeds the model for this sample
        ref = video_inputs(processor, item.video.frames, item.video.times_s, item.prompt,
                           duration_s=item.video.duration_s)
        prompt_len = ref["input_ids"].shape[1]
        assert prompt_len == n - len(idx)
        assert batch["input_ids"][i, :prompt_len].tolist() == ref["input_ids"][0].tolist()
    ref_sec = video_inputs(processor, items[0].video.frames, items[0].video.times_s,
                           items[0].prompt, duration_s=items[0].video.duration_s)
    assert float(batch["second_per_grid_ts"][0]) == pytest.approx(float(ref_sec["second_per_grid_ts"][0]))
    assert SAMPLING.max_frames == 16


def test_a_second_sft_cycle_starts_from_the_first_checkpoint_and_logs_the_total(toy_split, tiny_models,
                                                                               tmp_path):
    import json

    import torch
    from safetensors.torch import load_file


    first = train_sft(Path(tiny_models["qwen"]), tmp_path / "first", toy_split, steps=2, batch_size=2,
                      log_every=1, frame_cache=tmp_path / "f")
    first_log = json.loads((first / "sft_log.json").read_text())
    assert (tmp_path / "first.run" / "metrics.jsonl").is_file()  # the `scenetg train` run folder
    second = train_sft(first, tmp_path / "second", toy_split, steps=3, batch_size=2,
                       lr=0.0, log_every=1, prior=first_log, frame_cache=tmp_path / "f")
    log = json.loads((second / "sft_log.json").read_text())
    assert log["steps"] == 5 and log["cycles"] == [2, 3]
    assert [e["step"] for e in log["log"]] == [1, 2, 3, 4, 5]
    assert log["seconds"] >= first_log["seconds"] > 0
    # lr 0 in the second cycle: the weights are the first cycle's, not the base model's
    w1, w2 = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    base = load_file(Path(tiny_models["qwen"]) / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert any(not torch.equal(w1[k], base[k]) for k in w1 if k in base)


def test_grpo_trains_on_a_split_of_fresh_videos_not_the_sft_or_heldout_ones(tmp_path, monkeypatch):
    from dataclasses import replace

    from toy_grounding import pipeline

    monkeypatch.setattr(pipeline, "CACHE", tmp_path)
    sizes = replace(pipeline.QUICK, train_videos=3, heldout_videos=2, grpo_videos=3, grpo_per_video=2)
    train, held, grpo = pipeline.prepare_data(sizes)
    assert len(grpo.rows) == 6 and grpo.videos.is_dir()
    vids = [{r["vid"] for r in split.rows} for split in (train, held, grpo)]
    assert vids[2].isdisjoint(vids[0]) and vids[2].isdisjoint(vids[1])
    spans = [[r["relevant_windows"] for r in split.rows] for split in (train, grpo)]
    assert spans[0] != spans[1]  # other videos, not the training ones under new names
    seen = {}
    monkeypatch.setattr("scenetg.rl.train.train", lambda cfg, **kw: seen.setdefault("cfg", cfg))
    out = pipeline.grpo_run(sizes, grpo, tmp_path / "sft", pipeline.VARIANTS[0], seed=1)
    assert seen["cfg"].data.dataset == str(grpo.jsonl)
    assert seen["cfg"].data.video_root == str(grpo.videos)
    assert sizes.grpo_key in str(out)
    # another GRPO split size is another cache entry, never a stale split read back
    assert replace(sizes, grpo_videos=4).grpo_key != sizes.grpo_key
    overlap = pipeline.split_overlap(sizes)
    assert overlap["grpo_queries"] == 6
    assert overlap["shared_video_ids_train"] == overlap["shared_video_ids_heldout"] == 0


def test_split_overlap_finds_a_grpo_split_that_replays_the_training_layouts(monkeypatch):
    from dataclasses import replace

    from toy_grounding import pipeline

    sizes = replace(pipeline.QUICK, train_videos=5, per_video=2, grpo_videos=5, grpo_per_video=2)
    assert pipeline.split_overlap(sizes)["same_layout_videos_train"] == 0
    monkeypatch.setattr(pipeline, "grpo_seed", lambda s: s.data_seed)  # the SFT's own seed
    replay = pipeline.split_overlap(sizes)
    assert replay["same_layout_videos_train"] == 5 and replay["same_query_train"] == 10


def test_curve_summary_and_changed_answers(tmp_path):
    import json

    from toy_grounding.report import changed_answers, curve_summary

    rows = [{"step": i, "rewards/iou_reward/mean": i / 10, "frac_reward_zero_std": 0.5,
             "kl_timestamp": 0.2, "kl_other": 0.0} for i in range(1, 11)]
    (s,) = curve_summary({"v": [rows]}, window=2)["v"]
    assert s["iou_first"] == pytest.approx(0.15) and s["iou_last"] == pytest.approx(0.95)
    assert s["steps"] == 10 and s["kl_timestamp_last"] == pytest.approx(0.2)
    from scenetg.grounding.loaders import load_annotations

    gt = tmp_path / "gt.jsonl"
    gt.write_text("".join(json.dumps({"qid": q, "vid": "v", "duration": 24.0, "query": "x",
                                      "relevant_windows": [w]}) + "\n"
                          for q, w in [("1", [0, 3]), ("2", [3, 6]), ("3", [0, 1])]))
    records, _ = load_annotations(gt)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"qid": q, "pred": p}) + "\n" for q, p in
                         [("1", [0, 3]), ("2", [3, 6]), ("3", None)]))
    b.write_text("".join(json.dumps({"qid": q, "pred": p}) + "\n" for q, p in
                         [("1", [0, 3]), ("2", [3, 12]), ("3", [0, 1])]))
    # 1 unchanged hit; 2 was a hit, now IoU 1/3 (lost); 3 was invalid, now exact (gained)
    assert changed_answers(records, a, b) == {"changed": 2, "gained": 1, "lost": 1}


def test_results_table_shows_seed_spread_and_paired_hits_against_the_sft_start():
    from toy_grounding.report import results_table

    def ev(r1, gained=None, lost=None):
        e = {"R1@0.5": r1, "R1@0.7": 0.2, "mIoU": 0.4, "any_scene_exact": 0.3, "distinct_answers": 70}
        if gained is not None:
            e["vs_sft_start"] = {"changed": 100, "gained": gained, "lost": lost}
        return e

    lines = results_table([("SFT start", [ev(0.5)]), ("GRPO x", [ev(0.54, 44, 27), ev(0.52, 30, 20)])])
    sft_row, grpo_row = lines[2], lines[3]
    assert sft_row.endswith("| 70 |  |")
    assert "0.530 ± 0.014 (0.540 / 0.520)" in grpo_row
    assert grpo_row.endswith("| +44 −27, +30 −20 |")
