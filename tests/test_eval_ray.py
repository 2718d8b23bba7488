"""`--engine ray` for ground, answer and eval-suite: same rows as the local engine on a local Ray
cluster with 2 CPU model actors, resume of a killed run, resources checked before starting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenetg.demo_toy import TOY_SFT
from scenetg.errors import ConfigError
from scenetg.eval import answering as A
from scenetg.eval import grounding as G
from scenetg.eval.sharding import DECODE_TASK_CPUS, EvalEngineConfig, resources
from scenetg.grounding.records import GroundingRecord
from scenetg.video.synthetic import write_synthetic_video

RAY2 = EvalEngineConfig(name="ray", model_actors=2)


# ------------------------------------------------------------------ resources (no Ray needed)


def test_resources_auto_and_checked_against_the_cluster():
    auto = EvalEngineConfig(name="ray", model_actors=2)
    assert resources(auto, {"CPU": 16.0, "GPU": 2.0}) == (1.0, 1.0)
    assert resources(auto, {"CPU": 16.0, "GPU": 1.0}) == (0.5, 1.0)
    assert resources(auto, {"CPU": 2.0}) == (0.0, 0.75)  # (2 - 0.5 for decoding) / 2
    with pytest.raises(ConfigError, match=r"engine.model_gpus: 2 actor\(s\) x 1 GPU need 2 GPU; the Ray cluster offers 0"):
        resources(EvalEngineConfig(model_actors=2, model_gpus=1), {"CPU": 16.0})
    with pytest.raises(ConfigError, match=r"engine.model_cpus: 2 actor\(s\) x 1 CPU and 0.5 CPU"):
        resources(EvalEngineConfig(model_actors=2, model_cpus="1"), {"CPU": 2.0})
    assert DECODE_TASK_CPUS == 0.5


def test_engine_keys_are_coerced_naming_the_key():
    assert EvalEngineConfig(model_actors="3", model_gpus="0.5").model_gpus == 0.5
    for kwargs, key in (({"name": "spark"}, "engine.name"), ({"model_actors": 0}, "engine.model_actors"),
                        ({"model_gpus": "nan"}, "engine.model_gpus"), ({"model_cpus": 0}, "engine.model_cpus")):
        with pytest.raises(ConfigError, match=key):
            EvalEngineConfig(**kwargs)


# ---------------------------------------------------------------------- on a local Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for i in range(4):
        write_synthetic_video(root / f"v{i}.mp4", [1.5, 1.5 + 0.5 * i], fps=8, size=(64, 48), seed=i)
    return root


COLOURS = ("green", "blue", "red")


def _records() -> list[GroundingRecord]:
    recs = [GroundingRecord(f"q{i}{k}", f"v{i}", None if i % 2 else 3.0 + 0.5 * i,
                            f"the {COLOURS[k]} scene", [(0.0, 1.0)]) for i in range(4) for k in range(3)]
    return [*recs, GroundingRecord("qx", "gone", 5.0, "x", [(0.0, 1.0)])]


def _sorted_lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines(), key=lambda line: json.loads(line)["qid"])


def _ground(out: Path, engine=None, **kw):
    """The toy task's SFT checkpoint: unlike a random tiny model, its answer depends on the
    query's colour, so a query given another query's answer shows."""
    return G.ground(_records(), kw.pop("videos"), out, model=str(TOY_SFT), fps=4, max_frames=16,
                    batch_size=2, device="cpu", max_new_tokens=16, engine=engine, **kw)


@pytest.mark.slow
def test_ground_on_ray_matches_local_and_resumes_only_missing_qids(ray_cluster, videos, tmp_path):
    local, sharded = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    _ground(local, videos=videos)
    answers = {json.loads(line)["raw"] for line in local.read_text().splitlines()}
    assert len(answers) >= 4  # answers differ between queries: a mix-up would show
    stats = _ground(sharded, RAY2, videos=videos)
    assert stats.written == 13 and stats.videos == 5 and stats.missing_videos == 1
    assert _sorted_lines(sharded) == _sorted_lines(local)  # byte for byte after sorting by qid
    assert (tmp_path / "ray.producer.json").read_bytes() == (tmp_path / "local.producer.json").read_bytes()

    # a run killed after 5 rows (one torn): the Ray run finishes only the missing qids
    lines = local.read_text().splitlines(keepends=True)
    sharded.write_text("".join(lines[:5]) + lines[5][:10])
    stats = _ground(sharded, RAY2, videos=videos)
    assert stats.skipped == 5 and stats.written == 8
    assert _sorted_lines(sharded) == _sorted_lines(local)


@pytest.mark.slow
def test_answer_on_ray_matches_local(ray_cluster, videos, tiny_models, tmp_path):
    qa = [A.QARecord(f"a{i}{k}", f"v{i}", f"what is in {k}?", ["x", "y", "z"], 1, "short")
          for i in range(3) for k in range(2)]
    qa.append(A.QARecord("ax", "gone", "?", ["x", "y"], 0, "long"))
    kw = dict(n_frames=4, fps=2, max_frames=4, batch_size=2, device="cpu",
              max_new_tokens_ground=8, max_new_tokens_answer=4)
    A.answer(qa, videos, tmp_path / "local.jsonl", str(tiny_models["qwen"]), **kw)
    summary = A.answer(qa, videos, tmp_path / "ray.jsonl", str(tiny_models["qwen"]), engine=RAY2, **kw)
    assert summary["n"] == 7 and summary["errors"] == 1
    assert _sorted_lines(tmp_path / "ray.jsonl") == _sorted_lines(tmp_path / "local.jsonl")


@pytest.mark.slow
def test_eval_suite_engine_ray_same_metrics(ray_cluster, videos, tiny_models, tmp_path, monkeypatch):
    from scenetg.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "anno.jsonl").write_text("".join(
        json.dumps({"qid": f"q{i}", "vid": f"v{i}", "duration": 3.0 + 0.5 * i, "query": "x",
                    "relevant_windows": [[0, 1.5]]}) + "\n" for i in range(4)))
    for name, engine in (("local", "local"), ("ray", "ray")):
        (tmp_path / f"{name}.yaml").write_text(
            f"out: {name}\nmethods: [model, center]\nmodel: {tiny_models['qwen']}\nfps: 2\n"
            "max_frames: 4\nmax_new_tokens: 8\ndevice: cpu\n"
            f"engine: {{name: {engine}, model_actors: 2, model_cpus: '0.5'}}\n"
            f"benchmarks:\n  - {{name: b, annotations: anno.jsonl, videos: {videos}}}\n")
        assert main(["eval-suite", "-c", f"{name}.yaml"]) == 0
    for method in ("model", "center"):
        assert (_sorted_lines(tmp_path / "ray" / "b" / f"{method}.jsonl")
                == _sorted_lines(tmp_path / "local" / "b" / f"{method}.jsonl"))
    assert ((tmp_path / "ray" / "b" / "model.metrics.json").read_bytes()
            == (tmp_path / "local" / "b" / "model.metrics.json").read_bytes())


def test_ray_refuses_what_it_cannot_shard(videos, tmp_path):
    with pytest.raises(ConfigError, match="--engine ray runs method model"):
        G.ground(_records(), videos, tmp_path / "p.jsonl", method="clip", model="x", engine=RAY2)
    with pytest.raises(ConfigError, match="run method clip or --candidates with --engine local"):
        G.ground(_records(), videos, tmp_path / "p2.jsonl", model="x", candidates=3, engine=RAY2)
    with pytest.raises(ConfigError, match="--engine ray runs --grounder model"):
        A.answer([], videos, tmp_path / "a.jsonl", "x", grounder="clip", engine=RAY2)


@pytest.mark.vllm
@pytest.mark.slow
def test_ground_on_ray_with_a_vllm_engine_per_actor(videos, tmp_path):
    """`--backend vllm --engine ray`: each actor owns one vLLM engine (vLLM's data-parallel
    pattern); rows as the local vLLM run's."""
    pytest.importorskip("vllm")
    ray = pytest.importorskip("ray")
    from scenetg.models.tiny import make_tiny_qwen

    model = make_tiny_qwen(tmp_path / "qwen64", vllm_compatible=True)
    kw = dict(model=str(model), fps=2, max_frames=4, batch_size=4, max_new_tokens=8, backend="vllm")
    G.ground(_records(), videos, tmp_path / "local.jsonl", **kw)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20)
    G.ground(_records(), videos, tmp_path / "ray.jsonl", engine=EvalEngineConfig(name="ray"), **kw)
    assert _sorted_lines(tmp_path / "ray.jsonl") == _sorted_lines(tmp_path / "local.jsonl")
