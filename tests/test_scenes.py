"""Scene assembly on constructed shots (10 fps, 2-D unit embeddings with hand-computed cosines)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest

from scenetg.config import ScenesConfig
from scenetg.curate.stages.scenes import Scene, assemble_scenes

FPS = 10


@dataclass
class FakeShot:
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    embedding: np.ndarray


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def angle(rad: float) -> np.ndarray:
    return unit(math.cos(rad), math.sin(rad))


A, B = unit(1, 0), unit(0, 1)


def shots(*spec: tuple[float, float, np.ndarray]) -> list[FakeShot]:
    return [FakeShot(s, e, round(s * FPS), round(e * FPS), emb) for s, e, emb in spec]


def bounds(scenes: list[Scene]) -> list[tuple[float, float, int]]:
    return [(round(s.start_s, 6), round(s.end_s, 6), s.n_shots) for s in scenes]


def cfg(min_s: float = 2.0, max_s: float = 10.0, stitch: float = 0.98) -> ScenesConfig:
    return ScenesConfig(min_scene_s=min_s, max_scene_s=max_s, stitch_similarity=stitch)


# ----- stitching ----------------------------------------------------------------------------------
def test_near_identical_adjacent_shots_are_stitched() -> None:
    # cos(0.1 rad) = 0.995 >= 0.98: stitched; B is orthogonal: a new scene.
    got = assemble_scenes(shots((0, 3, A), (3, 6, angle(0.1)), (6, 9, B)), 9.0, cfg(), 4)
    assert bounds(got) == [(0, 6, 2), (6, 9, 1)]
    assert [(s.start_frame, s.end_frame) for s in got] == [(0, 60), (60, 90)]


def test_stitch_similarity_one_disables_stitching() -> None:
    got = assemble_scenes(shots((0, 3, A), (3, 6, A), (6, 9, A)), 9.0, cfg(stitch=1.0), 4)
    assert bounds(got) == [(0, 3, 1), (3, 6, 1), (6, 9, 1)]


def test_stitching_compares_with_the_scene_so_far_not_only_the_previous_shot() -> None:
    # Each step turns 0.15 rad (cos 0.989 >= 0.98), but the scene [0, 6) points at 0.075 rad and
    # the third shot at 0.30 rad is cos(0.225) = 0.975 < 0.98 away from it: a slow pan is cut.
    spec = [(3 * i, 3 * i + 3, angle(0.15 * i)) for i in range(4)]
    got = assemble_scenes(shots(*spec), 12.0, cfg(), 4)
    assert bounds(got) == [(0, 6, 2), (6, 12, 2)]


# ----- short shots --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("middle", "expected"),
    [
        (unit(0.8, 0.6), [(0, 5, 2), (5, 9, 1)]),  # cos 0.8 with A > 0.6 with B: joins A
        (unit(0.6, 0.8), [(0, 4, 1), (4, 9, 2)]),  # joins B
        (unit(1, 1), [(0, 5, 2), (5, 9, 1)]),  # tie: joins the previous scene
    ],
)
def test_short_shot_joins_the_more_similar_neighbour(middle, expected) -> None:
    got = assemble_scenes(shots((0, 4, A), (4, 5, middle), (5, 9, B)), 9.0, cfg(), 2)
    assert bounds(got) == expected


def test_short_shots_at_the_ends_join_their_only_neighbour() -> None:
    got = assemble_scenes(shots((0, 1, A), (1, 5, B), (5, 9, A), (9, 10, B)), 10.0, cfg(), 2)
    assert bounds(got) == [(0, 5, 2), (5, 10, 2)]


def test_merged_embedding_is_length_weighted() -> None:
    # U (1 s, A) joins V (3 s, B) first: the merged embedding is unit(1, 3).
    # W = (0.9, 0.436): cos with unit(1, 3) = 0.698 < cos with Z = A = 0.9, so W joins Z.
    # (An unweighted mean unit(1, 1) would give cos 0.945 and pull W the other way.)
    w = unit(0.9, math.sqrt(1 - 0.81))
    got = assemble_scenes(shots((0, 1, A), (1, 4, B), (4, 5, w), (5, 10, A)), 10.0,
                          cfg(stitch=1.0), 2)
    assert bounds(got) == [(0, 4, 2), (4, 10, 2)]


def test_shortest_short_segment_merges_first() -> None:
    # Y (0.5 s) merges first, into X (identical embedding): X+Y is 2 s and stays a scene.
    got = assemble_scenes(shots((0, 5, A), (5, 6.5, B), (6.5, 7, B), (7, 12, A)), 12.0,
                          cfg(stitch=1.0), 2)
    assert bounds(got) == [(0, 5, 1), (5, 7, 2), (7, 12, 1)]


def test_video_shorter_than_min_scene_is_one_scene() -> None:
    got = assemble_scenes(shots((0, 0.5, A), (0.5, 1.5, B)), 1.5, cfg(), 3)
    assert bounds(got) == [(0, 1.5, 2)]
    assert got[0].scene_index == 0 and (got[0].start_frame, got[0].end_frame) == (0, 15)


# ----- splitting ----------------------------------------------------------------------------------
def test_long_scene_is_split_into_minimal_equal_parts() -> None:
    got = assemble_scenes(shots((0, 25, A)), 25.0, cfg(max_s=10.0), 2)
    assert [s.scene_index for s in got] == [0, 1, 2]
    assert bounds(got) == [(0, 8.333333, 1), (8.333333, 16.666667, 1), (16.666667, 25, 1)]
    # Frame bounds interpolated: 0 + round(250 * i / 3).
    assert [(s.start_frame, s.end_frame) for s in got] == [(0, 83), (83, 167), (167, 250)]


@pytest.mark.parametrize(("length", "parts"), [(10.0, 1), (20.0, 2), (20.5, 3)])
def test_split_count_is_ceil_of_length_over_max(length, parts) -> None:
    got = assemble_scenes(shots((0, length, A)), length, cfg(max_s=10.0), 2)
    assert len(got) == parts
    assert all(s.end_s - s.start_s <= 10.0 + 1e-9 for s in got)


def test_split_parts_count_the_shots_they_overlap() -> None:
    # Two identical shots are stitched into [0, 25); the middle part overlaps both.
    got = assemble_scenes(shots((0, 12, A), (12, 25, A)), 25.0, cfg(max_s=10.0), 2)
    assert [s.n_shots for s in got] == [1, 2, 1]


# ----- coverage and keyframes ---------------------------------------------------------------------
def test_coverage_is_contiguous_despite_gaps_overrun_and_order() -> None:
    spec = shots((7, 12.3, B), (0.04, 3, A), (3.5, 7, unit(1, -1)), (12.0, 12.3, A))
    got = assemble_scenes(spec, 12.0, cfg(), 2)
    # Starts at 0, the gap [3, 3.5) goes to the earlier shot, ends at the duration; the shot that
    # starts at the duration folds into the last scene.
    assert bounds(got) == [(0, 3.5, 1), (3.5, 7, 1), (7, 12, 2)]
    assert [(s.start_frame, s.end_frame) for s in got] == [(0, 35), (35, 70), (70, 123)]


def test_random_shots_give_a_contiguous_bounded_cover() -> None:
    rnd = random.Random(0)
    config = cfg(min_s=2.0, max_s=7.0, stitch=0.9)
    for _ in range(50):
        cuts = sorted(rnd.uniform(0, 60) for _ in range(rnd.randint(0, 30)))
        edges = [0.0, *cuts, 60.0]
        spec = [(a, b, angle(rnd.uniform(0, 3))) for a, b in zip(edges, edges[1:], strict=False)]
        got = assemble_scenes(shots(*spec), 60.0, config, 3)
        assert [s.scene_index for s in got] == list(range(len(got)))
        assert got[0].start_s == 0.0 and got[-1].end_s == 60.0
        assert all(a.end_s == b.start_s and a.end_frame == b.start_frame
                   for a, b in zip(got, got[1:], strict=False))
        assert all(s.end_s - s.start_s <= 7.0 + 1e-9 for s in got)
        # Splitting last keeps parts >= max_scene_s / 2 = 3.5 > min_scene_s.
        assert all(s.end_s - s.start_s >= 2.0 - 1e-9 for s in got) or len(got) == 1


def test_keyframe_times_are_centres_of_equal_parts() -> None:
    got = assemble_scenes(shots((0, 2, A), (2, 6, B)), 6.0, cfg(), 4)
    assert got[1].keyframe_times == pytest.approx([2.5, 3.5, 4.5, 5.5])
    assert got[0].keyframe_times == pytest.approx([0.25, 0.75, 1.25, 1.75])


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        assemble_scenes([], 10.0, cfg(), 2)
    with pytest.raises(ValueError):
        assemble_scenes(shots((0, 1, A)), 0.0, cfg(), 2)
