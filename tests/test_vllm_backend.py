"""``--backend vllm`` for ground / answer / eval-suite against a stand-in for vLLM's `LLM`
(tests/vllm_standin.py: the HF processor run as vLLM's Qwen2.5-VL path runs it, then the tiny
model): fast unit tests of what we hand the engine. The same paths against real vLLM (its CPU
build, `make test-vllm`) are in tests/test_vllm_real.py."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from scenetg.errors import ConfigError, ScenetgError
from scenetg.eval import grounding as G
from scenetg.grounding.records import GroundingRecord
from scenetg.models.runner import QwenRunner
from scenetg.models.vllm_runner import VLLM_CPU_KV_CACHE_AUTO, vllm_memory_args
from scenetg.video.synthetic import write_synthetic_video
from tests import vllm_standin

REPETITION_PENALTY = 1.3


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_synthetic_video(root / "a.mp4", [2.0, 2.0], fps=10, size=(64, 48))
    write_synthetic_video(root / "b.mp4", [1.5, 1.5], fps=10, size=(64, 48), seed=1)
    return root


@pytest.fixture()
def qwen_with_penalty(tiny_models, tmp_path) -> Path:
    """The tiny Qwen with a repetition penalty in its generation config (as the real 7B has)."""
    folder = tmp_path / "qwen"
    shutil.copytree(tiny_models["qwen"], folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config["repetition_penalty"] = REPETITION_PENALTY
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


RECORDS = [
    GroundingRecord("q1", "a", 4.0, "a dark scene", [(0.0, 2.0)]),
    GroundingRecord("q2", "b", 3.0, "a bright scene", [(1.5, 3.0)]),
    GroundingRecord("q3", "a", 4.0, "the box moves", [(2.0, 4.0)]),
]


def _raw(path: Path) -> dict[str, str]:
    return {r["qid"]: r["raw"] for r in map(json.loads, path.read_text().splitlines())}


def test_ground_on_vllm_answers_as_transformers_with_our_frames_and_fps(
    videos, qwen_with_penalty, tmp_path, monkeypatch
):
    llm_cls = vllm_standin.install(monkeypatch)
    stats = G.ground(RECORDS, videos, tmp_path / "vllm.jsonl", model=str(qwen_with_penalty),
                     backend="vllm", fps=2, max_frames=4, max_new_tokens=12)
    assert stats.written == 3 and stats.parsed + stats.invalid == 3
    (llm,) = llm_cls.instances
    assert llm.kwargs["limit_mm_per_prompt"] == {"video": 1, "image": 0}
    # one vLLM call for the three queries (auto batch), greedy with the checkpoint's penalty
    (params,) = llm.sampling
    assert params.temperature == 0 and params.max_tokens == 12
    assert params.repetition_penalty == REPETITION_PENALTY
    assert params.stop_token_ids and params.skip_special_tokens
    # the two queries of video a share one stacked array: 2 distinct videos, 3 prompts
    assert len(llm.seen) == 3 and len({id(item["frames"]) for item in llm.seen}) == 2
    for item in llm.seen:
        meta = item["metadata"]
        k = item["frames"].shape[0]
        duration = 4.0 if meta["duration"] == pytest.approx(4.0) else 3.0
        # our uint8 frames with the real fps k / D, used as given: the time step is ours
        assert item["frames"].dtype == np.uint8 and k == 4
        assert meta["fps"] == pytest.approx(k / duration) and meta["do_sample_frames"] is False
        assert float(item["second_per_grid_ts"][0]) == pytest.approx(2 / (k / duration))
        assert item["prompt"].count("<|video_pad|>") == 1 and "<|im_start|>assistant" in item["prompt"]
    # the same texts as the transformers path on the same checkpoint
    runner = QwenRunner.load(qwen_with_penalty, device="cpu", max_new_tokens=12)
    assert runner.generation_config.repetition_penalty == REPETITION_PENALTY
    G.ground(RECORDS, videos, tmp_path / "hf.jsonl", model=runner, fps=2, max_frames=4,
             batch_size=1)
    texts = _raw(tmp_path / "vllm.jsonl")
    assert all(texts.values()) and texts == _raw(tmp_path / "hf.jsonl")


def test_vllm_backend_refuses_old_or_missing_vllm(videos, tiny_models, tmp_path, monkeypatch):
    vllm_standin.install(monkeypatch, version="0.29.0")
    with pytest.raises(ConfigError, match="24 fps"):
        G.ground(RECORDS, videos, tmp_path / "p.jsonl", model=str(tiny_models["qwen"]),
                 backend="vllm")
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    with pytest.raises(ScenetgError, match=r"\[vllm\] extra"):
        G.ground(RECORDS, videos, tmp_path / "p.jsonl", model=str(tiny_models["qwen"]),
                 backend="vllm")
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES"):
        G.ground(RECORDS, videos, tmp_path / "p.jsonl", model=str(tiny_models["qwen"]),
                 backend="vllm", device="cuda:1")
    with pytest.raises(ConfigError, match="backend must be one of transformers, vllm"):
        G.ground(RECORDS, videos, tmp_path / "p.jsonl", model=str(tiny_models["qwen"]),
                 backend="sglang")
    assert not (tmp_path / "p.jsonl").exists()


def test_answer_on_vllm_splits_the_gpu_between_two_mllms(videos, tiny_models, tmp_path, monkeypatch):
    from scenetg.eval.answering import answer
    from scenetg.eval.qa_loaders import QARecord

    llm_cls = vllm_standin.install(monkeypatch, cpu=True)
    grounder = tmp_path / "grounder"
    shutil.copytree(tiny_models["qwen"], grounder)
    records = [QARecord("m1", "a", "what colour?", ["red", "blue"], 0, "short", 4.0)]
    answer(records, videos, tmp_path / "qa.jsonl", str(tiny_models["qwen"]),
           grounder_model=str(grounder), n_frames=2, max_frames=4, backend="vllm",
           vllm_memory="0.6")
    shares = [llm.kwargs["gpu_memory_utilization"] for llm in llm_cls.instances]
    assert shares == [0.3, 0.3]
    assert all(llm.seen for llm in llm_cls.instances)  # both engines answered from video
    # auto without a GPU (the stand-in has no vLLM platform: torch sees no CUDA here): half of
    # the CPU build's 1 GiB KV cache each, and no share of host RAM
    llm_cls.instances.clear()
    answer(records, videos, tmp_path / "qa2.jsonl", str(tiny_models["qwen"]),
           grounder_model=str(grounder), n_frames=2, max_frames=4, backend="vllm")
    assert [llm.kwargs.get("kv_cache_memory_bytes") for llm in llm_cls.instances] == [512 << 20] * 2
    assert not any("gpu_memory_utilization" in llm.kwargs for llm in llm_cls.instances)


def test_vllm_memory_setting_resolves_per_device_and_engine_count():
    from scenetg.config_fields import coerce_vllm_memory

    assert vllm_memory_args("auto", 1, on_cpu=False) == {"gpu_memory_utilization": 0.9}
    assert vllm_memory_args("auto", 3, on_cpu=False) == {"gpu_memory_utilization": pytest.approx(0.3)}
    assert vllm_memory_args("auto", 1, on_cpu=True) == {"kv_cache_memory_bytes": 1 << 30}
    assert VLLM_CPU_KV_CACHE_AUTO == 1 << 30
    assert vllm_memory_args(0.5, 2, on_cpu=True) == {"gpu_memory_utilization": 0.25}
    assert coerce_vllm_memory("k", " AUTO ") == "auto" and coerce_vllm_memory("k", "0.25") == 0.25
    assert coerce_vllm_memory("k", 1) == 1.0
    for bad in (0, "0", 1.5, -0.1, "nan", "inf", "half", True, None):
        with pytest.raises(ConfigError, match=r"^--vllm-memory: expected 'auto' or a share > 0 and <= 1"):
            coerce_vllm_memory("--vllm-memory", bad)


def test_vllm_memory_that_vllm_cannot_meet_is_one_line_naming_the_setting(
    videos, tiny_models, tmp_path, monkeypatch
):
    """vLLM's start-up refusal ("Available memory ... is less than desired ...") becomes a
    ConfigError that names the flag to change; other engine errors pass through."""
    from scenetg.models.vllm_runner import VLLMRunner

    llm_cls = vllm_standin.install(monkeypatch, cpu=True)
    message = ("Available memory on node 0 (2.1/23.4 GiB) on startup is less than desired CPU "
               "memory utilization (0.9, 21.1 GiB). On the CPU backend, ...")

    def refuse(self, model, **kwargs):
        raise ValueError(message if kwargs.get("gpu_memory_utilization") else "other failure")

    monkeypatch.setattr(llm_cls, "__init__", refuse)
    with pytest.raises(ConfigError) as err:
        G.ground(RECORDS, videos, tmp_path / "p.jsonl", model=str(tiny_models["qwen"]),
                 backend="vllm", vllm_memory=0.9)
    text = str(err.value)
    assert text.startswith("--vllm-memory 0.9: vLLM cannot reserve that memory (Available memory")
    assert "set --vllm-memory to a smaller share" in text and "\n" not in text
    with pytest.raises(ConfigError, match=r"^captions.vllm_memory: 0.5: vLLM cannot reserve"):
        VLLMRunner.load(tiny_models["qwen"], memory=0.5, memory_key="captions.vllm_memory:")
    with pytest.raises(ValueError, match="other failure"):  # auto on CPU: a KV size, no share
        VLLMRunner.load(tiny_models["qwen"])
    with pytest.raises(ConfigError, match=r"^--vllm-memory: expected 'auto' or a share"):
        G.ground(RECORDS, videos, tmp_path / "p.jsonl", model=str(tiny_models["qwen"]),
                 backend="vllm", vllm_memory=2)


def test_cli_backend_errors_are_one_line(videos, tiny_models, tmp_path):
    import subprocess

    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"qid": "q1", "vid": "a", "duration": 4.0, "query": "x",
                               "relevant_windows": [[0, 1]]}) + "\n")
    base = [sys.executable, "-m", "scenetg.cli", "ground", "-a", str(ann), "--videos", str(videos),
            "--out", str(tmp_path / "p.jsonl"), "--model", str(tiny_models["qwen"])]
    for backend, message in (("sglang", "backend must be one of transformers, vllm"),
                             ("vllm", "pip install 'scenetg[vllm]'")):
        run = subprocess.run([*base, "--backend", backend], capture_output=True, text=True)
        assert run.returncode == 2, run.stderr
        lines = [line for line in run.stderr.strip().splitlines() if line.startswith("error")]
        assert len(lines) == 1 and message in lines[0], run.stderr
    for command in ("ground", "answer"):
        args = base if command == "ground" else [
            sys.executable, "-m", "scenetg.cli", "answer", "--qa", str(ann), "--videos", str(videos),
            "--out", str(tmp_path / "qa.jsonl"), "--answerer", str(tiny_models["qwen"])]
        run = subprocess.run([*args, "--backend", "vllm", "--vllm-memory", "half"],
                             capture_output=True, text=True)
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip() == ("error: --vllm-memory: expected 'auto' or a share > 0 and "
                                      "<= 1, got 'half'"), run.stderr
    for command in ("ground", "answer"):  # rich markup must not eat the extra's brackets
        help_text = subprocess.run([sys.executable, "-m", "scenetg.cli", command, "--help"],
                                   capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        assert "pip install 'scenetg[vllm]'" in help_text.stdout


def test_eval_suite_backend_key(videos, tiny_models, tmp_path, monkeypatch, capsys):
    """`backend: vllm` runs every MLLM of the suite on vLLM, each with its share of the GPU; an
    unknown backend is a one-line error before anything runs."""
    from scenetg.cli import main

    llm_cls = vllm_standin.install(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anno.jsonl").write_text(json.dumps(
        {"qid": "q1", "vid": "a", "duration": 4.0, "query": "a dark scene",
         "relevant_windows": [[0, 2]]}) + "\n")
    config = (f"out: out\nmethods: [model, trained]\nmodel: {tiny_models['qwen']}\n"
              f"models: {{trained: {tiny_models['qwen']}}}\nmax_frames: 4\nmax_new_tokens: 8\n"
              f"benchmarks:\n  - {{name: a, annotations: anno.jsonl, videos: {videos}}}\n")
    (tmp_path / "eval.yaml").write_text(config + "backend: tgi\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend: use one of transformers, vllm" in err[0]
    assert not llm_cls.instances and not (tmp_path / "out").exists()

    (tmp_path / "eval.yaml").write_text(config + "backend: vllm\ndevice: cpu\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend: vllm runs on the GPU vLLM sees, not on device: cpu" in err[0]

    (tmp_path / "eval.yaml").write_text(config + "backend: vllm\n")
    (tmp_path / "eval.yaml").write_text(config + "backend: vllm\nvllm_memory: 1.2\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vllm_memory: expected 'auto' or a share > 0 and <= 1, got 1.2" in err[0]

    (tmp_path / "eval.yaml").write_text(config + "backend: vllm\nvllm_memory: '0.9'\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    assert [llm.kwargs["gpu_memory_utilization"] for llm in llm_cls.instances] == [0.45, 0.45]
    assert all(len(llm.seen) == 1 for llm in llm_cls.instances)
    for method in ("model", "trained"):
        (row,) = map(json.loads, (tmp_path / "out" / "a" / f"{method}.jsonl").read_text().splitlines())
        assert row["qid"] == "q1" and not row["raw"].startswith("error")


def test_captions_backend_vllm_captions_as_transformers(videos, qwen_with_penalty, monkeypatch):
    """`captions.backend: vllm`: the same captions as the transformers backend, each scene sent
    with its frames and its own fps (K / scene length)."""
    from scenetg.config import CaptionsConfig
    from scenetg.curate.stages.captions import (
        SceneFrames,
        TransformersCaptioner,
        make_caption_backend,
    )
    from scenetg.video.frames import read_frames_at

    llm_cls = vllm_standin.install(monkeypatch)
    spans = [(0.0, 2.0), (2.0, 4.0), (0.5, 3.5)]
    scenes = []
    for start, end in spans:
        times = [start + (end - start) * (i + 0.5) / 3 for i in range(3)]
        scenes.append(SceneFrames(read_frames_at(videos / "a.mp4", times, max_side=64), times, end - start))
    with pytest.raises(ConfigError, match=r"^captions.vllm_memory: expected 'auto' or a share"):
        CaptionsConfig(backend="vllm", vllm_memory="90%")
    assert CaptionsConfig(vllm_memory=" Auto").vllm_memory == "auto"
    cfg = CaptionsConfig(backend="vllm", model=str(qwen_with_penalty), max_new_tokens=10,
                         device="cpu", dtype="bf16", vllm_memory="0.3")
    with pytest.raises(ConfigError, match="captions.device: cpu"):  # vLLM picks its own GPU
        make_caption_backend(cfg)
    cfg.device = "auto"
    captions = make_caption_backend(cfg).caption_scenes(scenes)
    (llm,) = llm_cls.instances
    assert llm.kwargs["dtype"] == "bfloat16"  # our dtype names in vLLM's spelling
    assert llm.kwargs["gpu_memory_utilization"] == 0.3  # captions.vllm_memory
    fps = [item["metadata"]["fps"] for item in llm.seen]
    assert fps == pytest.approx([3 / (end - start) for start, end in spans])
    cfg_hf = CaptionsConfig(backend="transformers", model=str(qwen_with_penalty), max_new_tokens=10,
                            device="cpu", dtype="float32", batch_size=1)
    assert captions == TransformersCaptioner(cfg_hf).caption_scenes(scenes)
    assert all(captions)
