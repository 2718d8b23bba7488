"""CLIP ambiguity filter on hand-made unit vectors whose cosines are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenetg.curate.stages.ambiguity import filter_queries, scene_embedding

SCENES = np.eye(3, dtype=np.float32)  # v_j = e_j, so s_ij = t_i[j]
TEXTS = np.array(
    [
        [0.8, 0.6, 0.0],  # own 0.8, best other 0.6: kept with delta 0.1
        [0.64, 0.48, 0.6],  # own 0.48, scene 0 (0.64) and scene 2 (0.6) beat it: rank 3
        [0.6, 0.48, 0.64],  # own 0.64, scene 0 at 0.6: top-1 by only 0.04
    ],
    dtype=np.float32,
)


def test_kept_and_each_drop_reason() -> None:
    got = filter_queries(TEXTS, SCENES, 0.1)
    assert got == [
        {"clip_self": 0.8, "clip_best_other": 0.6, "clip_margin": 0.2, "clip_rank": 1,
         "confusers": [], "kept": True, "drop_reason": None},
        {"clip_self": 0.48, "clip_best_other": 0.64, "clip_margin": -0.16, "clip_rank": 3,
         "confusers": [0, 2], "kept": False, "drop_reason": "not_top1"},
        {"clip_self": 0.64, "clip_best_other": 0.6, "clip_margin": 0.04, "clip_rank": 1,
         "confusers": [0], "kept": False, "drop_reason": "ambiguous"},
    ]


def test_result_types_are_plain_python() -> None:
    for fig in filter_queries(TEXTS, SCENES, 0.1):
        assert type(fig["clip_self"]) is float and type(fig["clip_margin"]) is float
        assert type(fig["clip_rank"]) is int
        assert all(type(j) is int for j in fig["confusers"])
        assert type(fig["kept"]) is bool


def test_empty_caption_takes_priority_and_keeps_figures() -> None:
    got = filter_queries(TEXTS, SCENES, 0.1, empty=[True, False, True])
    assert [g["drop_reason"] for g in got] == ["empty_caption", "not_top1", "empty_caption"]
    assert [g["kept"] for g in got] == [False, False, False]
    assert got[0]["clip_margin"] == 0.2 and got[2]["clip_margin"] == 0.04


def test_margin_exactly_delta_is_kept_and_lists_the_confuser() -> None:
    # s_00 - s_01 = 0.8 - 0.6 = 0.2 = delta: kept (margin >= delta); s_01 >= s_00 - delta: confuser.
    got = filter_queries(TEXTS, SCENES, 0.2)
    assert got[0]["kept"] is True and got[0]["clip_margin"] == 0.2
    assert got[0]["confusers"] == [1]


def test_delta_zero_keeps_every_top1_query() -> None:
    got = filter_queries(TEXTS, SCENES, 0.0)
    assert [g["drop_reason"] for g in got] == [None, "not_top1", None]


def test_tie_with_another_scene() -> None:
    h = math.sqrt(0.5)
    text = np.array([[h, h], [1.0, 0.0]], dtype=np.float32)
    scenes = np.eye(2, dtype=np.float32)
    strict = filter_queries(text, scenes, 0.02)[0]
    assert strict["clip_rank"] == 1 and strict["clip_margin"] == 0.0
    assert strict["drop_reason"] == "ambiguous"
    assert filter_queries(text, scenes, 0.0)[0]["kept"] is True


def test_single_scene_video_is_dropped_with_null_figures() -> None:
    got = filter_queries(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]), 0.02)
    assert got == [{"clip_self": 0.6, "clip_best_other": None, "clip_margin": None,
                    "clip_rank": 1, "confusers": [], "kept": False,
                    "drop_reason": "single_scene"}]
    empty = filter_queries(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]), 0.02, empty=[True])
    assert empty[0]["drop_reason"] == "empty_caption"


def test_matches_a_naive_loop_on_random_embeddings() -> None:
    rng = np.random.default_rng(0)
    n, d, delta = 12, 8, 0.05
    t = rng.normal(size=(n, d)).astype(np.float32)
    v = t + 0.8 * rng.normal(size=(n, d)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    got = filter_queries(t, v, delta)
    s = np.round((t @ v.T).astype(np.float64), 6)
    for i, fig in enumerate(got):
        others = [s[i, j] for j in range(n) if j != i]
        margin = round(s[i, i] - max(others), 6)
        assert fig["clip_self"] == s[i, i]
        assert fig["clip_best_other"] == max(others)
        assert fig["clip_margin"] == margin
        assert fig["clip_rank"] == 1 + sum(x > s[i, i] for x in others)
        assert fig["confusers"] == [j for j in range(n) if j != i and round(s[i, i] - s[i, j], 6) <= delta]
        assert fig["kept"] == (fig["clip_rank"] == 1 and margin >= delta)
    assert {g["drop_reason"] for g in got} >= {None, "not_top1"}


def test_no_queries_and_bad_shapes() -> None:
    assert filter_queries(np.zeros((0, 4)), np.zeros((0, 4)), 0.1) == []
    with pytest.raises(ValueError):
        filter_queries(np.zeros((2, 4)), np.zeros((3, 4)), 0.1)
    with pytest.raises(ValueError):
        filter_queries(TEXTS, SCENES, 0.1, empty=[False])
    with pytest.raises(ValueError):
        filter_queries(TEXTS, SCENES, -0.1)


def test_scene_embedding_is_normalised_mean() -> None:
    got = scene_embedding(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [math.sqrt(0.5)] * 2, rtol=1e-6)
    np.testing.assert_allclose(scene_embedding(np.array([[0.6, 0.8], [0.6, 0.8]])), [0.6, 0.8],
                               rtol=1e-6)
    with pytest.raises(ValueError):
        scene_embedding(np.zeros((0, 3)))
