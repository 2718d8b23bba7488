"""The ambiguous-queries regime (benchmarks/toy_claims/ambiguous.py): its generator, the filter on
toy embeddings, and a quick end-to-end run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from toy_claims import ambiguous as A  # noqa: E402
from toy_claims import ambiguous_data as D  # noqa: E402
from toy_claims.ambiguous_report import EXPECTED  # noqa: E402

from scenetg.toy_task import CELLS, MIN_LUMA_STEP, PALETTE, ToyVideo, luma  # noqa: E402

HAND = ToyVideo("v0", 24, ("red", "yellow", "blue", "red"), (0, 6, 12, 18, 24))


def test_every_video_repeats_one_colour_in_two_non_adjacent_scenes():
    for spec in D.split_specs("t", 300, seed=3):
        n = len(spec.colours)
        assert 4 <= n <= 6
        counts = {c: spec.colours.count(c) for c in spec.colours}
        assert sorted(counts.values()) == [1] * (n - 2) + [2]
        i, j = [k for k, c in enumerate(spec.colours) if counts[c] == 2]
        assert j - i >= 2
        assert all(abs(luma(PALETTE[a]) - luma(PALETTE[b])) >= MIN_LUMA_STEP
                   for a, b in zip(spec.colours, spec.colours[1:], strict=False))
        cell = spec.duration_s // CELLS
        assert spec.bounds_s[0] == 0 and spec.bounds_s[-1] == spec.duration_s
        assert all(b % cell == 0 for b in spec.bounds_s)


def test_ambiguous_share_is_two_scenes_per_video():
    specs = D.split_specs("t", 200, seed=0)
    rows = [r for s in specs for r in D.scene_queries(s)]
    share = sum(r["ambiguous"] for r in rows) / len(rows)
    assert share == pytest.approx(2 * 200 / sum(len(s.colours) for s in specs))
    assert 0.35 < share < 0.45


def test_scene_queries_by_hand():
    rows = D.scene_queries(HAND)
    assert [r["qid"] for r in rows] == ["v0_s0", "v0_s1", "v0_s2", "v0_s3"]
    assert [r["query"] for r in rows] == ["the red scene", "the yellow scene", "the blue scene", "the red scene"]
    assert [r["ambiguous"] for r in rows] == [True, False, False, True]
    assert rows[0]["relevant_windows"] == [[0.0, 6.0]] and rows[0]["twin_windows"] == [[18.0, 24.0]]
    assert rows[3]["relevant_windows"] == [[18.0, 24.0]] and rows[3]["twin_windows"] == [[0.0, 6.0]]
    assert rows[1]["twin_windows"] == []


def test_filter_drops_exactly_the_twins_on_palette_embeddings():
    rows = D.scene_queries(HAND)
    scenes = D.query_embeddings(rows)  # a flat scene's mean colour is its palette colour
    figs = D.filter_video(rows, scenes, 0.02)
    assert [f["kept"] for f in figs] == [False, True, True, False]
    assert [f["drop_reason"] for f in figs] == ["ambiguous", None, None, "ambiguous"]
    assert figs[0]["clip_margin"] == 0.0 and figs[0]["confusers"] == [3]
    # by hand: cos(yellow, red) = 66925 / (√126125 · √53075) = 0.8180; cos(blue, yellow) = 0.4367
    assert figs[1]["clip_margin"] == pytest.approx(1 - 0.8180, abs=1e-3)
    assert figs[2]["clip_margin"] == pytest.approx(1 - 0.4367, abs=1e-3)
    q = D.filter_quality(rows, [not f["kept"] for f in figs])
    assert (q["precision"], q["recall"], q["dropped_unambiguous"]) == (1.0, 1.0, 0)
    assert D.filter_quality(rows, [True, True, False, False])["precision"] == 0.5
    assert D.filter_quality(rows, [True, True, False, False])["recall"] == 0.5


def test_decoded_scene_embeddings_separate_colours(tmp_path):
    from scenetg.toy_task import write_toy_video

    path = tmp_path / "v0.mp4"
    write_toy_video(path, HAND)
    emb = D.scene_embeddings(path, HAND, keyframes=4)
    assert emb.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, D.query_embeddings(D.scene_queries(HAND)), atol=0.02)
    figs = D.filter_video(D.scene_queries(HAND), emb, 0.02)
    assert [f["kept"] for f in figs] == [False, True, True, False]


def test_shows_rule():
    assert A.shows({"gained": 30, "lost": 10, "p": 0.002, "seeds_ahead": 5, "seeds_behind": 0}, 0.5, 0.48) == "yes"
    assert A.shows({"gained": 12, "lost": 10, "p": 0.8, "seeds_ahead": 3, "seeds_behind": 2}, 0.5, 0.49) == "mixed"
    assert A.shows({"gained": 10, "lost": 12, "p": 0.8, "seeds_ahead": 2, "seeds_behind": 3}, 0.49, 0.5) == "no"


@pytest.mark.slow
def test_quick_run_end_to_end():
    out = A.run(quick=True)
    assert out["regime"] == "ambiguous" and out["claim"]
    (row,) = out["readme_rows"]
    assert set(row) == {"comparison", "metric", "a", "b", "paired", "shows"}
    assert row["shows"] in {"yes", "no", "mixed"}
    res = json.loads((A.CACHE / "quick_docs" / "ambiguous" / "results.json").read_text())
    assert res["quick"] is True
    assert res["data"]["ambiguous_share"]["filtered"] == 0.0
    assert res["data"]["ambiguous_share"]["unfiltered"] > 0.0
    assert res["data"]["filter"]["precision"] == 1.0 and res["data"]["filter"]["recall"] == 1.0
    assert len(res["per_seed"]["filtered"]) == len(res["per_seed"]["unfiltered"]) == A.QUICK.seeds
    doc = (A.CACHE / "quick_docs" / "ambiguous.md").read_text()
    assert "## Expected, written before the runs" in doc
    assert EXPECTED.read_text().rstrip() in doc
    assert (A.CACHE / "quick_docs" / "ambiguous" / "reward.png").is_file()
