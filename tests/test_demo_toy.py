"""The demo's toy-grounding leg: the shipped SFT checkpoint, its provenance, and the toy sets the
demo writes (the whole leg runs in tests/test_demo.py)."""

from __future__ import annotations

import hashlib
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from scenetg import demo_toy
from scenetg.demo_toy import TOY_HELDOUT, TOY_SFT, TOY_TRAIN, copy_toy_sft, provenance
from scenetg.errors import ScenetgError

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_SHA256 = "9b837bda7baad07a159e04717cc70da94e9d792bc137e8638bf14c4ad749050e"
"""The toy benchmark's 12,500-step SFT weights (docs/BENCHMARKS.md, toy grounding)."""


def test_shipped_checkpoint_resolves_through_importlib_resources_and_matches_its_provenance():
    assert TOY_SFT == resources.files("scenetg") / "demo_assets" / "toy_sft"
    prov = provenance()
    assert prov["sha256"]["model.safetensors"] == WEIGHTS_SHA256
    for name, digest in prov["sha256"].items():
        assert hashlib.sha256((TOY_SFT / name).read_bytes()).hexdigest() == digest, name
    made = prov["made_by"]
    assert made["steps"] == 12_500 and made["cycles"] == [4_000, 8_500]
    assert "toy_grounding" in made["command"]
    assert prov["data"]["train"]["seed"] == 0 and prov["data"]["heldout"]["seed"] == 10_000
    assert prov["heldout_metrics"]["R1@0.5"] == pytest.approx(0.487)
    # what `provenance.json` claims about the SFT is what its own log recorded
    import json

    log = json.loads((TOY_SFT / "sft_log.json").read_text())
    assert (log["steps"], log["cycles"], log["seed"]) == (12_500, [4_000, 8_500], 1)


@pytest.mark.slow
def test_shipped_checkpoint_loads_with_load_qwen_and_answers_in_the_grounding_format(tmp_path):
    """The user's path: `load_qwen` on the packaged folder; the weights are the SFT's (a random
    tiny model does not write `<answer>S - E</answer>`)."""
    from scenetg.grounding.parsing import parse_answer
    from scenetg.grounding.samples import (
        FrameSampling,
        GroundingInput,
        generate_grounding,
        sample_video,
    )
    from scenetg.models.qwen import load_qwen
    from scenetg.models.runner import QwenRunner
    from scenetg.toy_task import make_split

    with resources.as_file(TOY_SFT / "config.json") as config:
        model, processor = load_qwen(config.parent, dtype="float32", device="cpu")
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) == 239_840
    split = make_split(tmp_path, "probe", 3, 1, seed=99)
    sampling = FrameSampling(**provenance()["data"]["sampling"])
    items = [GroundingInput(sample_video(split.videos / f"{r['vid']}.mp4", r["duration"], sampling),
                            r["query"]) for r in split.rows]
    runner = QwenRunner(model, processor, max_new_tokens=24)
    for text, row in zip(generate_grounding(runner, items), split.rows, strict=True):
        span = parse_answer(text)
        assert span is not None and 0 <= span[0] < span[1] <= row["duration"], text


def test_demo_toy_configs_sample_frames_as_the_sft_did():
    sampling = provenance()["data"]["sampling"]
    train = yaml.safe_load(demo_toy.DEMO_TOY_TRAIN_CONFIG.read_text())
    assert train["sampling"] == sampling
    ev = yaml.safe_load(demo_toy.DEMO_TOY_EVAL_CONFIG.read_text())
    assert (ev["fps"], ev["max_frames"]) == (sampling["fps"], sampling["max_frames"])
    assert ev["max_new_tokens"] >= provenance()["data"]["max_new_tokens"]
    assert {"trained", "sft_start", "center", "clip"} <= set(ev["methods"])


def test_demo_toy_videos_are_none_the_sft_trained_or_was_scored_on():
    """Other seeds and names than the benchmark's splits, and no video layout (duration, cuts,
    colours) in common with any of its 1,800 videos."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from toy_grounding.pipeline import Sizes, heldout_seed

    from scenetg.toy_task import split_specs

    sizes = Sizes()
    bench = {"train": (sizes.train_videos, sizes.per_video, sizes.data_seed),
             "heldout": (sizes.heldout_videos, 1, heldout_seed(sizes))}
    data = provenance()["data"]
    assert bench["train"] == (data["train"]["videos"], data["train"]["queries_per_video"], data["train"]["seed"])
    assert bench["heldout"][2] == data["heldout"]["seed"]

    def layouts(name, n, per, seed):
        return {(s.duration_s, s.bounds_s, s.colours): s.vid for s, _ in split_specs(name, n, per, seed)}

    seen = {}
    for name, (n, per, seed) in bench.items():
        seen.update(layouts(name, n, per, seed))
    for spec in (TOY_TRAIN, TOY_HELDOUT):
        assert spec.seed not in (sizes.data_seed, heldout_seed(sizes))
        assert spec.name not in bench
        mine = layouts(spec.name, spec.videos, spec.per_video, spec.seed)
        assert len(mine) == spec.videos
        assert not set(mine) & set(seen), [mine[k] for k in set(mine) & set(seen)]
        assert not set(mine.values()) & set(seen.values())
    both = layouts(TOY_TRAIN.name, TOY_TRAIN.videos, 2, TOY_TRAIN.seed)
    assert not set(both) & set(layouts(TOY_HELDOUT.name, TOY_HELDOUT.videos, 1, TOY_HELDOUT.seed))


def test_copy_of_the_checkpoint_is_checked_against_provenance_and_reused(tmp_path, monkeypatch):
    dst = copy_toy_sft(tmp_path / "sft_start")
    assert hashlib.sha256((dst / "model.safetensors").read_bytes()).hexdigest() == WEIGHTS_SHA256
    assert (dst / "provenance.json").is_file() and not (tmp_path / "sft_start.tmp").exists()
    mtime = (dst / "model.safetensors").stat().st_mtime_ns
    assert copy_toy_sft(dst) == dst and (dst / "model.safetensors").stat().st_mtime_ns == mtime
    # a damaged install: one clear error, nothing half-written where the demo looks
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in TOY_SFT.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\0" * 16)
    monkeypatch.setattr(demo_toy, "TOY_SFT", broken)
    with pytest.raises(ScenetgError, match="sha256"):
        copy_toy_sft(tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_a_newly_trained_model_is_not_scored_with_an_earlier_models_predictions(tmp_path, monkeypatch):
    """Predictions resume by query id: after a fresh GRPO run the old `trained` ones must go (the
    other methods' stay), and after a reused run they stay."""
    paths = demo_toy.toy_paths(tmp_path)
    preds = paths.eval / "toy_heldout"
    seen = []
    monkeypatch.setattr(demo_toy, "write_toy_sets", lambda data_dir: (None, None))
    monkeypatch.setattr(demo_toy, "run_toy_eval", lambda *a, **k: (
        seen.append(sorted(p.name for p in preds.iterdir())) or ([], paths.eval / "report.md")))
    for fresh in (False, True):
        preds.mkdir(parents=True, exist_ok=True)
        for name in ("trained.jsonl", "trained.metrics.json", "sft_start.jsonl", "clip.jsonl"):
            (preds / name).write_text("{}\n")
        monkeypatch.setattr(demo_toy, "run_toy_train", lambda *a, f=fresh, **k: (paths.train / "final", f))
        demo_toy.run_toy_leg(tmp_path, tmp_path / "clip")
    assert seen == [["clip.jsonl", "sft_start.jsonl", "trained.jsonl", "trained.metrics.json"],
                    ["clip.jsonl", "sft_start.jsonl"]]
