"""Real vLLM (its CPU build, `make test-vllm`) against transformers on the same tiny checkpoint.

The tiny Qwen2.5-VL with head_dim 64 (`make_tiny_qwen(vllm_compatible=True)`, what vLLM's CPU
attention accepts), fp32 in both engines, on synthetic videos of different durations and frame
rates. One vLLM engine serves the module (an engine start is 20-30 s); eval-suite and captions
start their own, through the config keys a user sets.

What is compared, and why. vLLM positions the text after a video as Qwen2.5-VL's own code does
(the video's largest M-RoPE position + 1); transformers >= 5.3 restarts it at the video's start +
max(h, w) (huggingface/transformers#45381; 5.17 also truncates `second_per_grid_ts` to an
integer). `load_qwen` gives the model Qwen's reference positions (`models.rope_positions`), so
transformers' own forward agrees with vLLM to `LOGPROB_TOL`, as it does when handed
`engine_parity.qwen_reference_positions` explicitly; stock transformers (the override removed)
differs by up to `POSITION_SHIFT_BOUND` on this model. A random tiny model has near-flat
next-token distributions and loops, so the transformers backend's greedy path may leave vLLM's
where two tokens are that close; end-to-end texts (ground, answer, eval-suite, captions) must be
equal, or part at a step where transformers' top-2 margin is below twice the tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scenetg.eval import grounding as G
from scenetg.grounding.prompts import grounding_prompt, sample_video_times
from scenetg.grounding.records import GroundingRecord
from scenetg.models.engine_parity import compare_greedy, teacher_forced_logprobs, vllm_greedy
from scenetg.models.rope_positions import install_reference_positions, remove_reference_positions
from scenetg.models.runner import QwenRunner, load_runner
from scenetg.video.frames import read_frames_at
from scenetg.video.synthetic import write_synthetic_video

pytestmark = pytest.mark.vllm

LOGPROB_TOL = 1e-5
"""Largest |log p_vLLM − log p_transformers| per token in fp32, transformers given Qwen's
reference positions (measured: at most 7e-7; docs/BENCHMARKS.md, "Real vLLM on the CPU")."""

POSITION_SHIFT_BOUND = 1e-2
"""The same with stock transformers' (shifted) positions after the video (measured: up to 3.5e-3
on this model; a trained model's would differ more: the shift is a different input)."""

N_TOKENS = 24
"""Greedy tokens compared per query."""

FPS, MAX_FRAMES = 2.0, 8
VIDEOS = {  # name: (scene durations, file fps) -> 4 s / 6 s / 2.5 s; 8 / 8 / 4 frames sampled
    "a": ([2.0, 2.0], 10),
    "b": ([3.0, 3.0], 8),
    "c": ([1.25, 1.25], 24),
}
QUERIES = ["the bright scene", "a dark box moves"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from scenetg.models.tiny import make_tiny_qwen

    root = tmp_path_factory.mktemp("vllm_real")
    model = make_tiny_qwen(root / "qwen", vllm_compatible=True)
    videos = root / "videos"
    videos.mkdir()
    records = []
    for i, (name, (scenes, fps)) in enumerate(VIDEOS.items()):
        write_synthetic_video(videos / f"{name}.mp4", scenes, fps=fps, size=(64, 48), seed=i)
        duration = sum(scenes)
        records += [GroundingRecord(f"{name}{j}", name, duration, q, [(0.0, scenes[0])])
                    for j, q in enumerate(QUERIES)]
    return model, videos, records


@pytest.fixture(scope="module")
def engines(corpus):
    """(vLLM runner, transformers runner) on the same checkpoint, both fp32. The vLLM one comes
    through `load_runner(..., "vllm")`, the path of `ground --backend vllm`."""
    model, _, _ = corpus
    vllm_runner = load_runner(model, "vllm", dtype="float32", max_new_tokens=N_TOKENS)
    hf_runner = QwenRunner.load(model, dtype="float32", device="cpu", max_new_tokens=N_TOKENS)
    return vllm_runner, hf_runner


def _inputs(videos: Path, records, durations=None):
    """Frames sampled as `ground` samples them; `durations` overrides each video's stated length
    (so only the fps given to the model changes, not the frames)."""
    items = []
    for i, rec in enumerate(records):
        times = sample_video_times(rec.duration_s, FPS, MAX_FRAMES)
        frames = read_frames_at(videos / f"{rec.video_id}.mp4", times, max_side=64)
        duration = rec.duration_s if durations is None else durations[i]
        items.append((frames, times, grounding_prompt(rec.query, rec.duration_s), duration))
    return items


def _compare(vllm_runner, hf_runner, items, positions="qwen"):
    paths = vllm_greedy(vllm_runner, [f for f, _, _, _ in items], [t for _, t, _, _ in items],
                        [p for _, _, p, _ in items], [d for _, _, _, d in items], N_TOKENS)
    results = []
    for (frames, times, prompt, duration), path in zip(items, paths, strict=True):
        hf = teacher_forced_logprobs(hf_runner.model, hf_runner.processor, frames, times, prompt,
                                     duration, path.token_ids, positions=positions)
        results.append((path, hf, compare_greedy(path, hf)))
    return results


def _assert_agree(results, tol=LOGPROB_TOL):
    for path, _, cmp in results:
        assert len(path.token_ids) == N_TOKENS
        assert cmp.max_abs_diff < tol, cmp
        if cmp.first_divergence is not None:  # only a near-tie may flip the greedy choice
            assert cmp.margin_at_divergence < 2 * tol, cmp


def test_greedy_logprobs_agree_with_transformers(engines, corpus):
    vllm_runner, hf_runner = engines
    _, videos, records = corpus
    results = _compare(vllm_runner, hf_runner, _inputs(videos, records))
    _assert_agree(results)
    diffs = [cmp.max_abs_diff for _, _, cmp in results]
    print(f"max |dlogp| over {len(results)} queries x {N_TOKENS} tokens: {max(diffs):.2e}")
    # transformers' own forward (`load_qwen`'s model: reference positions installed) agrees too
    own = _compare(vllm_runner, hf_runner, _inputs(videos, records), positions="transformers")
    _assert_agree(own)
    print(f"transformers' own positions: {max(cmp.max_abs_diff for _, _, cmp in own):.2e}")
    # stock transformers: bounded, and not float noise (if this fails, transformers positions text
    # after a video as Qwen does again: drop `models.rope_positions`)
    assert remove_reference_positions(hf_runner.model) == 1
    try:
        stock = _compare(vllm_runner, hf_runner, _inputs(videos, records), positions="transformers")
    finally:
        assert install_reference_positions(hf_runner.model) == 1
    _assert_agree(stock, POSITION_SHIFT_BOUND)
    shifted = max(cmp.max_abs_diff for _, _, cmp in stock)
    print(f"with stock transformers' positions: {shifted:.2e}")
    assert shifted > 100 * LOGPROB_TOL
    # the paths are not degenerate: a real distribution, different answers for different inputs
    assert all(np.mean(path.logprobs) > -20 for path, _, _ in results)
    assert len({tuple(path.token_ids) for path, _, _ in results}) > 1


def test_changing_only_the_fps_changes_both_engines_the_same_way(engines, corpus):
    """The same frames with a doubled stated duration (half the fps, twice `second_per_grid_ts`):
    vLLM's log-probs move by far more than the tolerance, and still agree with transformers'
    at the new fps, so our time encoding reaches vLLM (an engine that ignored the metadata
    would give the same output at both fps)."""
    vllm_runner, hf_runner = engines
    _, videos, records = corpus
    records = records[::2]
    base = _compare(vllm_runner, hf_runner, _inputs(videos, records))
    slow = _compare(vllm_runner, hf_runner,
                    _inputs(videos, records, durations=[2 * r.duration_s for r in records]))
    _assert_agree(slow)
    for (p1, hf1, _), (p2, hf2, _) in zip(base, slow, strict=True):
        # the first token's distribution (the prompts are identical) moved in both engines alike
        first_v = np.array([p1.logprobs[0], p2.logprobs[0]])
        first_hf = np.array([hf1[0, p1.token_ids[0]], hf2[0, p2.token_ids[0]]])
        assert np.abs(first_v - first_hf).max() < LOGPROB_TOL
        moved = float(np.abs(hf1[0] - hf2[0]).max())
        assert moved > 100 * LOGPROB_TOL, moved


def _rows(path: Path) -> dict[str, dict]:
    return {r["qid"]: r for r in map(json.loads, path.read_text().splitlines())}


def _same_or_near_tie(vllm_runner, hf_runner, items, texts_v, texts_hf):
    """Texts equal, or, where they differ, the engines' token paths part where transformers'
    (own positions) top-2 margin is a near-tie."""
    differ = [i for i, (a, b) in enumerate(zip(texts_v, texts_hf, strict=True)) if a != b]
    if differ:
        _assert_agree(_compare(vllm_runner, hf_runner, [items[i] for i in differ],
                               positions="transformers"))
    return len(texts_v) - len(differ)


def test_ground_and_answer_give_the_transformers_predictions(engines, corpus, tmp_path):
    from scenetg.eval.answering import answer
    from scenetg.eval.qa_loaders import QARecord

    vllm_runner, hf_runner = engines
    _, videos, records = corpus
    common = dict(fps=FPS, max_frames=MAX_FRAMES, max_side=64, max_new_tokens=N_TOKENS)
    G.ground(records, videos, tmp_path / "v.jsonl", model=vllm_runner, **common)
    G.ground(records, videos, tmp_path / "t.jsonl", model=hf_runner, batch_size=1, **common)
    v, t = _rows(tmp_path / "v.jsonl"), _rows(tmp_path / "t.jsonl")
    assert set(v) == set(t) == {r.qid for r in records}
    same = _same_or_near_tie(vllm_runner, hf_runner, _inputs(videos, records),
                             [v[r.qid]["raw"] for r in records], [t[r.qid]["raw"] for r in records])
    print(f"ground: {same}/{len(records)} raw texts equal")
    assert all(v[q]["pred"] == t[q]["pred"] for q in v if v[q]["raw"] == t[q]["raw"])

    qa = [QARecord(f"m{i}", r.video_id, "what colour is the scene?", ["red", "blue", "green"], 1,
                   "short", r.duration_s) for i, r in enumerate(records[::2])]
    for name, runner in (("v", vllm_runner), ("t", hf_runner)):
        answer(qa, videos, tmp_path / f"qa_{name}.jsonl", runner, n_frames=4, max_frames=4,
               fps=FPS, batch_size=1 if name == "t" else "auto", max_side=64,
               max_new_tokens_ground=N_TOKENS)
    qv, qt = _rows(tmp_path / "qa_v.jsonl"), _rows(tmp_path / "qa_t.jsonl")
    assert set(qv) == set(qt) == {q.qid for q in qa}
    keys = [k for k in next(iter(qv.values())) if k.startswith(("raw_", "choice_", "correct_"))]
    assert keys
    agree = sum(all(qv[q][k] == qt[q][k] for k in keys) for q in qv)
    assert agree >= len(qa) - 1, (qv, qt)


def test_eval_suite_backend_vllm_scores_as_transformers(corpus, tmp_path, monkeypatch, capsys):
    """`backend: vllm` with `vllm_memory: auto` (a fixed KV cache on the CPU build) starts its
    own engine from the config and gives the transformers suite's predictions and scores."""
    from scenetg.cli import main

    model, videos, records = corpus
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anno.jsonl").write_text("".join(
        json.dumps({"qid": r.qid, "vid": r.video_id, "duration": r.duration_s, "query": r.query,
                    "relevant_windows": [list(r.windows[0])]}) + "\n" for r in records))
    config = (f"methods: [model]\nmodel: {model}\nfps: {FPS}\nmax_frames: {MAX_FRAMES}\n"
              f"max_new_tokens: {N_TOKENS}\ndtype: float32\nbatch_size: 1\n"
              f"benchmarks:\n  - {{name: syn, annotations: anno.jsonl, videos: {videos}}}\n")
    (tmp_path / "v.yaml").write_text(config + "out: v\nbackend: vllm\nvllm_memory: auto\n")
    (tmp_path / "t.yaml").write_text(config + "out: t\nbackend: transformers\ndevice: cpu\n")
    assert main(["eval-suite", "-c", "v.yaml"]) == 0
    assert main(["eval-suite", "-c", "t.yaml"]) == 0
    v, t = _rows(tmp_path / "v/syn/model.jsonl"), _rows(tmp_path / "t/syn/model.jsonl")
    assert set(v) == set(t) == {r.qid for r in records}
    same = sum(v[q]["raw"] == t[q]["raw"] for q in v)
    assert same >= len(records) - 1, (v, t)
    if same == len(records):  # the same report, but for the folder its predictions are in
        reports = [(tmp_path / f"{out}/report.md").read_text().split("\n", 3)[3]
                   .replace(f"`{out}/syn/", "`OUT/syn/") for out in ("v", "t")]
        assert "`OUT/syn/" in reports[0]
        assert reports[0] == reports[1]


def test_captions_backend_vllm_captions_as_transformers(corpus):
    from scenetg.config import CaptionsConfig
    from scenetg.curate.stages.captions import (
        SceneFrames,
        TransformersCaptioner,
        make_caption_backend,
    )

    model, videos, _ = corpus
    scenes = []
    for name, (durations, _fps) in VIDEOS.items():
        start = 0.0
        for length in durations:
            times = [start + length * (i + 0.5) / 4 for i in range(4)]
            scenes.append(SceneFrames(read_frames_at(videos / f"{name}.mp4", times, max_side=64),
                                      times, length))
            start += length
    common = dict(model=str(model), max_new_tokens=N_TOKENS, dtype="float32")
    vllm_caps = make_caption_backend(CaptionsConfig(backend="vllm", **common)).caption_scenes(scenes)
    hf_caps = TransformersCaptioner(
        CaptionsConfig(backend="transformers", device="cpu", batch_size=1, **common)
    ).caption_scenes(scenes)
    assert len(vllm_caps) == len(hf_caps) == len(scenes)
    same = sum(a == b for a, b in zip(vllm_caps, hf_caps, strict=True))
    assert same >= len(scenes) - 1, list(zip(vllm_caps, hf_caps, strict=True))


def test_memory_share_vllm_cannot_meet_is_one_line(corpus):
    """A share of host RAM above what is free: vLLM's CPU worker refuses at start; the user
    gets one line naming the flag."""
    from scenetg.errors import ConfigError
    from scenetg.models.vllm_runner import VLLMRunner

    model, _, _ = corpus
    with pytest.raises(ConfigError) as err:
        VLLMRunner.load(model, dtype="float32", memory=1.0)
    text = str(err.value)
    assert text.startswith("--vllm-memory 1.0: vLLM cannot reserve that memory (Available memory")
    assert "\n" not in text
