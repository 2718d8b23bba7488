"""Claim 1's regime (benchmarks/toy_claims/sparse_events.py): the sparse toy videos (events of
2 s in 60–64 s of grey fillers, each seen by a sampled frame), the verdict rules, and the quick
end-to-end run."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from toy_claims import common  # noqa: E402
from toy_claims import sparse_events as se  # noqa: E402
from toy_claims import sparse_events_report as rep  # noqa: E402
from toy_claims import sparse_events_start as ss  # noqa: E402

from scenetg.grounding.samples import FrameSampling  # noqa: E402
from scenetg.toy_task import PALETTE, ToyVideo, luma, write_toy_video  # noqa: E402


def specs(n=300, seed=7):
    rng = np.random.default_rng(seed)
    return [se.make_sparse_spec(rng, f"v{i}") for i in range(n)]


def test_fillers_sum_to_the_gap_in_allowed_lengths():
    rng = np.random.default_rng(0)
    for total in (2, 5, 6, 7, 8, 13, 40):
        parts = se._fillers(rng, total)
        assert sum(parts) == total
        assert all(2 <= p <= 6 for p in parts)
    assert se._fillers(rng, 6) == [6]  # a gap that fits one filler is one scene


def test_events_are_two_seconds_unique_palette_colours_and_sparse():
    counts = set()
    for spec in specs():
        assert 60 <= spec.duration_s <= 64
        assert spec.bounds_s[0] == 0 and spec.bounds_s[-1] == spec.duration_s
        lengths = np.diff(spec.bounds_s)
        events = se.event_colours(spec)
        counts.add(len(events))
        assert 1 <= len(events) <= 3
        assert len(set(events)) == len(events)
        for i, c in enumerate(spec.colours):
            if c in PALETTE:
                assert lengths[i] == 2
                assert 0 < i < len(spec.colours) - 1  # never first or last
                assert spec.colours[i - 1] in se.GREYS and spec.colours[i + 1] in se.GREYS
                assert 0.031 <= lengths[i] / spec.duration_s <= 0.034  # 2/64 .. 2/60
            else:
                assert c in se.GREYS and 2 <= lengths[i] <= 6
        steps = [abs(luma(se.SPARSE_PALETTE[a]) - luma(se.SPARSE_PALETTE[b]))
                 for a, b in zip(spec.colours, spec.colours[1:], strict=False)]
        assert min(steps) >= 40
    assert counts == {1, 2, 3}


def test_every_event_holds_a_sampled_frame():
    sampling = FrameSampling(**se.SAMPLING)
    # by hand: D = 64 → 32 frames at 0, 2, 4, ...; the event [21, 23) holds t = 22
    assert sampling.times(64)[:3] == [0.0, 2.0, 4.0] and len(sampling.times(64)) == 32
    assert sampling.times(60)[1] == pytest.approx(1.875)
    for spec in specs():
        times = np.asarray(sampling.times(spec.duration_s))
        for c in se.event_colours(spec):
            s, e = spec.span(c)
            assert np.any((times >= s) & (times < e)), (spec, c)


def test_split_rows_are_event_spans(tmp_path):
    split = se.make_sparse_split(tmp_path, "t", 3, 2, seed=5)
    again = list(se.sparse_specs("t", 3, 2, seed=5))
    assert len(split.rows) == sum(len(c) for _, c in again)
    for row in split.rows:
        spec = next(s for s, _ in again if s.vid == row["vid"])
        colour = row["query"].split()[1]
        assert colour in PALETTE
        assert row["relevant_windows"] == [[float(x) for x in spec.span(colour)]]
        assert row["duration"] == float(spec.duration_s)
        assert (split.videos / f"{row['vid']}.mp4").is_file()
    assert se.make_sparse_split(tmp_path, "t", 3, 2, seed=5).rows == split.rows  # cached


def test_the_event_colour_is_in_the_decoded_frame(tmp_path):
    from scenetg.video.frames import read_frames_at

    spec = ToyVideo("h", 60, ("grey30", "green", "grey230"), (0, 21, 23, 60))
    path = tmp_path / "h.mp4"
    write_toy_video(path, spec, se.SPARSE_PALETTE)
    before, event, after = read_frames_at(path, [20.0, 22.0, 23.5], max_side=64)
    assert np.abs(event.reshape(-1, 3).mean(0) - PALETTE["green"]).max() < 12
    assert before.mean() < 45 and after.mean() > 210


def test_verdict_and_iou_updown_by_hand():
    assert rep._iou_updown({"a": 0.1, "b": 0.5, "c": 0.0}, {"a": 0.2, "b": 0.5, "c": 0.0})["gained"] == 1
    d = rep._iou_updown({"a": 0.3, "b": 0.5}, {"a": 0.2, "b": 0.1})
    assert (d["gained"], d["lost"], d["p"]) == (0, 2, 0.5)
    assert rep._shows({"gained": 20, "lost": 3, "p": 0.001, "seeds_ahead": 4, "seeds_behind": 1}) == "yes"
    assert rep._shows({"gained": 20, "lost": 3, "p": 0.001, "seeds_ahead": 2, "seeds_behind": 3}) == "mixed"
    assert rep._shows({"gained": 8, "lost": 3, "p": 0.23, "seeds_ahead": 4, "seeds_behind": 1}) == "no"
    assert rep._shows({"gained": 3, "lost": 20, "p": 0.001, "seeds_ahead": 0, "seeds_behind": 5}) == "no"


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(se, "CACHE", tmp_path)
    monkeypatch.setattr(common, "CACHE", tmp_path)
    out = se.run(quick=True)
    assert out["regime"] == "sparse_events"
    rows = out["readme_rows"]
    assert [r["metric"] for r in rows[:3]] == ["held-out R1@0.3", "held-out R1@0.5", "held-out mIoU"]
    assert all(r["shows"] in ("yes", "no", "mixed") for r in rows)
    doc = (tmp_path / "quick_docs" / "sparse_events.md").read_text()
    assert se.EXPECTED in doc
    assert (tmp_path / "quick_docs" / "sparse_events" / "heldout_R1_0.5.png").is_file()
    res = common.json.loads((tmp_path / "quick_docs" / "sparse_events" / "results.json").read_text())
    assert set(res["runs"]) == set(se.VARIANTS) and list(res["runs"]["iou only"]["0"]["curve"]) == ["0", "1", "2"]
    fu = res["followup_sparse_sft"]  # the same comparison from the sparse-SFT start
    assert fu["start"]["sft"]["sft_steps"] == ss.QUICK_STEPS and set(fu["runs"]) == set(se.VARIANTS)
    assert fu["expected"] == ss.EXPECTED and ss.EXPECTED in doc and "sparse-SFT start" in doc
    assert [r["comparison"].startswith("sparse-SFT start") for r in rows] == [False] * 4 + [True] * 4
    assert (tmp_path / "quick_docs" / "sparse_events" / "sparse_start" / "heldout_R1_0.5.png").is_file()
    assert 0 <= res["start"]["rollouts"]["overlap_rate"] <= 1
    # the zero-advantage share: CenDist ranks every pair of valid answers, IoU only rarely
    assert res["mechanism"]["iou+cendist"]["zero_std_all"] <= res["mechanism"]["iou only"]["zero_std_all"]


def test_sparse_sft_split_is_disjoint_from_the_grpo_and_heldout_splits():
    def layouts(name, n, per_video, seed):
        return {(s.duration_s, s.colours, s.bounds_s): s.vid for s, _ in se.sparse_specs(name, n, per_video, seed)}

    sft = layouts(f"sft_s{ss.SFT_SEED}_{ss.SFT_VIDEOS}", ss.SFT_VIDEOS, ss.SFT_PER_VIDEO, ss.SFT_SEED)
    grpo = layouts(f"grpo_s{se.GRPO_SEED}_{se.FULL.grpo_videos}", se.FULL.grpo_videos, 1, se.GRPO_SEED)
    held = layouts(f"heldout_s{se.HELDOUT_SEED}_{se.FULL.heldout_videos}", se.FULL.heldout_videos, 1,
                   se.HELDOUT_SEED)
    assert len({ss.SFT_SEED, se.GRPO_SEED, se.HELDOUT_SEED}) == 3
    assert len(sft) == ss.SFT_VIDEOS  # no video repeats inside the split either
    assert not set(sft) & set(grpo) and not set(sft) & set(held)  # no shared video layout
    assert not set(sft.values()) & (set(grpo.values()) | set(held.values()))  # nor video id
