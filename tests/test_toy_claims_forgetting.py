"""The forgetting regime (benchmarks/toy_claims/forgetting.py and its forgetting_data /
forgetting_runs / forgetting_report parts): the palette-order questions (the second skill) and
the colour-at-time questions tried first, against hand-computed values, equal training compute,
the verdict rule, and the quick run (with the 4x follow-up) end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_claims import forgetting as fg
from toy_claims import forgetting_data as fd
from toy_claims import forgetting_runs as fr

from scenetg.toy_task import ToyVideo, split_specs

SPEC = ToyVideo("v", 24, ("red", "blue", "yellow", "green"), (0, 6, 9, 18, 24))
"""Scenes [0, 6) red, [6, 9) blue, [9, 18) yellow, [18, 24) green."""


def test_question_times_are_whole_seconds_strictly_inside_the_scene():
    rng = np.random.default_rng(0)
    # blue is [6, 9): the only whole seconds off its cuts are 7 and 8
    assert {fd.question_time(SPEC, 1, rng) for _ in range(50)} == {7, 8}
    assert {fd.question_time(SPEC, 0, rng) for _ in range(100)} == {1, 2, 3, 4, 5}
    assert {fd.question_time(SPEC, 3, rng) for _ in range(100)} == {19, 20, 21, 22, 23}


def test_colour_at_reads_half_open_scenes():
    assert fd.colour_at(SPEC, 0) == "red"
    assert fd.colour_at(SPEC, 5.9) == "red"
    assert fd.colour_at(SPEC, 6) == "blue"  # a cut belongs to the scene it starts
    assert fd.colour_at(SPEC, 8.9) == "blue"
    assert fd.colour_at(SPEC, 9) == "yellow"
    assert fd.colour_at(SPEC, 23.5) == "green"
    assert fd.question_text(12) == "What colour is the scene at 12 s?"


def test_an_answer_is_right_when_it_names_the_colour_and_no_other():
    assert fd.qa_correct("green", "green")
    assert fd.qa_correct("Green.", "green")
    assert fd.qa_correct("green green", "green")  # the same word twice is still one colour
    assert not fd.qa_correct("green or blue", "green")  # two palette colours
    assert not fd.qa_correct("blue", "green")
    assert not fd.qa_correct("greenish", "green")  # not the palette word
    assert not fd.qa_correct("", "green")
    assert not fd.qa_correct("<think></think><answer>0 - 6</answer>", "green")  # a grounding answer
    assert fd.colour_words("a red and a PINK scene") == {"red", "pink"}


def test_question_rows_ask_distinct_scenes_of_the_splits_own_videos():
    rows = fd.question_rows("fq", 30, 2, seed=7)
    specs = [spec for spec, _ in split_specs("fq", 30, 2, 7)]
    assert len(rows) == 60 and len({r["qid"] for r in rows}) == 60
    by_vid = {s.vid: s for s in specs}
    for r in rows:
        spec = by_vid[r["vid"]]
        scene = spec.colours.index(r["colour"])
        start, end = spec.bounds_s[scene], spec.bounds_s[scene + 1]
        assert start < r["t_s"] < end and isinstance(r["t_s"], int)  # never on a cut
        assert fd.colour_at(spec, r["t_s"]) == r["answer"] == r["colour"]
        assert r["question"] == fd.question_text(r["t_s"]) and r["duration"] == spec.duration_s
    for vid in by_vid:  # two distinct scenes of each video
        assert len({r["colour"] for r in rows if r["vid"] == vid}) == 2
    assert rows == fd.question_rows("fq", 30, 2, seed=7)  # seeded
    # the answers spread over the palette (no colour is a free guess): each of 8 colours appears
    assert len({r["colour"] for r in rows}) == 8


def test_palette_order_facts():
    assert fd.ORDER == ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
    assert fd.order_answer("green", "after") == "cyan"
    assert fd.order_answer("green", "before") == "yellow"
    assert fd.order_answer("pink", "after") == "red"  # a circle
    assert fd.order_answer("red", "before") == "pink"
    rows = fd.fact_rows("fq", 40, 2, 6, seed=3)
    assert len(rows) == 240 and len({r["qid"] for r in rows}) == 240
    for r in rows:
        relation, colour = r["fact"].split()
        assert r["question"] == f"Which colour comes {relation} {colour}?"
        assert r["answer"] == r["colour"] == fd.order_answer(colour, relation)
        assert fd.qa_correct(r["answer"], r["colour"])
    assert len({r["fact"] for r in rows}) == 16  # all 8 x 2 facts drawn
    specs = {spec.vid: spec for spec, _ in split_specs("fq", 40, 2, 3)}  # the videos make_split writes
    assert [r["vid"] for r in rows] == [v for v in specs for _ in range(6)]
    assert all(r["duration"] == specs[r["vid"]].duration_s for r in rows)
    assert rows == fd.fact_rows("fq", 40, 2, 6, seed=3)


def test_facts_kept_counts_facts_right_on_half_their_questions():
    qs = [{"qid": "1", "fact": "after red"}, {"qid": "2", "fact": "after red"},
          {"qid": "3", "fact": "before red"}, {"qid": "4", "fact": "before red"}, {"qid": "5", "fact": "before red"}]
    evals = {"m": {"qa_correct": {"1": True, "2": False, "3": True, "4": False, "5": False}}}
    assert fr.fact_accuracy(qs, evals) == {"n_facts": 2, "kept": {"m": 1}}  # 1/2 kept, 1/3 not


def test_equal_training_compute_is_equal_sequences_through_the_loss():
    # FULL: GRPO 30 steps x 4 prompts x 8 rollouts = 960 sequences = SFT 60 steps x batch 16
    assert fg.FULL.grpo_steps * fg.FULL.prompts * fg.GENERATIONS == 960
    assert fg.FULL.sft_steps == 60
    for sizes in (fg.FULL, fg.QUICK):
        assert sizes.sft_steps * fg.SFT_BATCH == sizes.grpo_steps * sizes.prompts * fg.GENERATIONS
    assert [(v.key, v.beta, v.beta_timestamp) for v in fg.VARIANTS if v.algo == "grpo"] == [
        ("b", 0.04, 0.0), ("c", 0.04, 0.04), ("d", 0.0, 0.0)]


def test_verdict_rule():
    assert fg.verdict({"gained": 20, "lost": 5, "p": 0.004}, "higher") == "yes"
    assert fg.verdict({"gained": 8, "lost": 5, "p": 0.58}, "higher") == "mixed"
    assert fg.verdict({"gained": 5, "lost": 8, "p": 0.58}, "higher") == "no"
    assert fg.verdict({"gained": 2, "lost": 30, "p": 1e-6}, "lower") == "yes"
    assert fg.verdict({"gained": 2, "lost": 30, "p": 1e-6}, "not lower") == "no"
    assert fg.verdict({"gained": 4, "lost": 9, "p": 0.27}, "not lower") == "yes"


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, monkeypatch):
    """Every stage at a smoke size, in a fresh cache: doc, JSON and PNGs under quick_docs (never
    docs/), README rows, and every number of the doc's per-seed table from the JSON."""
    from toy_claims import common

    monkeypatch.setattr(common, "CACHE", tmp_path)
    monkeypatch.setattr(fg, "CACHE", tmp_path)
    before = sorted(p.name for p in common.DOCS.glob("**/*")) if common.DOCS.is_dir() else []
    out = fg.run(quick=True)
    assert out["regime"] == "forgetting" and len(out["readme_rows"]) == 8 + 5  # main runs + the 4x follow-up
    assert all(r["shows"] in ("yes", "no", "mixed") and r["paired"].startswith("+") for r in out["readme_rows"])
    doc = (tmp_path / "quick_docs" / "forgetting.md").read_text()
    res = json.loads((tmp_path / "quick_docs" / "forgetting" / "results.json").read_text())
    assert set(res["runs"]) == {"a", "b", "c", "d"} and set(res["runs"]["b"]) == {"0", "1"}
    assert "## Expected, written before the runs" in doc and "## Reading" in doc
    assert f"| (b) GRPO β_ts=0 | 1 | {res['runs']['b']['1']['R1@0.5']:.3f} |" in doc
    for png in ("tradeoff.png", "reward.png", "kl_timestamp.png", "kl_other.png", "sft_loss.png"):
        assert (tmp_path / "quick_docs" / "forgetting" / png).stat().st_size > 1000
    assert res["runs"]["b"]["0"]["kl_timestamp"] >= 0 and res["runs"]["a"]["0"]["kl_other"] >= 0
    pair = res["paired"]["b vs start|qa"]
    assert pair["pooled"]["gained"] == sum(p["gained"] for p in pair["per_seed"])
    fu = res["followup"]  # the follow-up at 4x compute: equal sequences on both sides, paired per seed
    assert fu["sft_steps"] == 4 * fg.QUICK.sft_steps and fu["grpo_steps"] == 4 * fg.QUICK.grpo_steps
    assert fu["sft_steps"] * fg.SFT_BATCH == fu["sequences_per_run"] == fu["grpo_steps"] * fg.QUICK.prompts * fg.GENERATIONS
    assert set(fu["runs"]) == {"a", "b"} and set(fu["runs"]["b"]) == {"0"}
    assert set(fu["paired"]) == {f"{c}|{m}" for c in ("a vs start", "b vs start", "b vs a") for m in ("grounding", "qa")}
    b_vs_a = fu["paired"]["b vs a|qa"]["per_seed"][0]
    assert b_vs_a["gained"] == sum(not a and b for a, b in zip(
        *(_qa(tmp_path, f"{fg.QUICK.key}_{name}") for name in ("ax4_s0_n4_lr0.001", "bx4_s0_n4x2")), strict=True))
    assert "## Follow-up at 4× compute" in doc
    assert f"| (b) GRPO β_ts=0 4× | 0 | {fu['runs']['b']['0']['R1@0.5']:.3f} |" in doc
    row = out["readme_rows"][-2]
    assert row["comparison"].startswith("(b) GRPO β_ts=0 4× vs (a) SFT 4×") and row["metric"].startswith("palette-QA")
    after = sorted(p.name for p in common.DOCS.glob("**/*")) if common.DOCS.is_dir() else []
    assert after == before  # nothing written into docs/


def _qa(cache, tag: str) -> list[bool]:
    """A quick run's per-question palette hits (sorted by qid) from its cached eval."""
    ev = json.loads((cache / "forgetting_quick" / "evals" / f"{tag}.json").read_text())
    return [ev["qa_correct"][q] for q in sorted(ev["qa_correct"])]
