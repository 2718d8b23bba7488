"""Does vLLM compute what transformers computes on the same checkpoint and video inputs?

`vllm_greedy` runs `VLLMRunner`'s requests greedily for a fixed number of tokens and keeps the
log-prob vLLM reports for each chosen token (its raw model output, before any penalty);
`teacher_forced_logprobs` runs the transformers model once over prompt + those tokens (our own
`batch_video_inputs`, so the same frames, fps and ``second_per_grid_ts``) and gives the full
log-softmax at each of them. `compare_greedy` puts the two side by side: the largest log-prob
difference on the shared path, and where transformers' own greedy choice first differs from
vLLM's, with its top-2 margin there (a near-tie explains a divergence; a wide margin does not).
Used by tests/test_vllm_real.py and benchmarks/bench_vllm.py; on a GPU it checks a real
checkpoint the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scenetg.models.qwen import batch_video_inputs


@dataclass
class GreedyPath:
    """One greedy completion: its token ids and vLLM's log-prob of each."""

    token_ids: list[int]
    logprobs: list[float]


def vllm_greedy(
    runner: Any,
    videos: Sequence[Sequence[np.ndarray]],
    times_s: Sequence[Sequence[float]],
    prompts: Sequence[str],
    durations_s: Sequence[float | None],
    n_tokens: int,
) -> list[GreedyPath]:
    """`n_tokens` greedy tokens per (video, prompt) from `runner` (a `VLLMRunner`), end tokens
    ignored so every path has the same length, no repetition penalty (the raw model)."""
    params = runner._sampling_params(temperature=0.0, max_tokens=int(n_tokens), ignore_eos=True,
                                     logprobs=0, repetition_penalty=1.0)
    outputs = runner.llm.generate(runner.requests(videos, times_s, prompts, durations_s), params,
                                  use_tqdm=False)
    paths = []
    for out in outputs:
        completion = out.outputs[0]
        ids = [int(t) for t in completion.token_ids]
        lps = [float(step[t].logprob) for t, step in zip(ids, completion.logprobs, strict=True)]
        paths.append(GreedyPath(ids, lps))
    return paths


def qwen_reference_positions(
    input_ids: Sequence[int], video_grid_thw: Sequence[int], second_per_grid_t: float,
    video_token_id: int, spatial_merge_size: int, tokens_per_second: float,
) -> np.ndarray:
    """(3, L) M-RoPE positions of one sequence with one video, as Qwen2.5-VL's own
    ``get_rope_index`` (transformers 4.49-5.2, the code the checkpoints were trained with) and
    vLLM compute them: text counts on, video grid (t, h, w) gets temporal position
    ``floor(t * second_per_grid_t * tokens_per_second)``, and the text after the video starts at
    the video's largest position + 1. transformers >= 5.3 restarts that text at the video's
    start + max(h, w) (huggingface/transformers#45381), which for a video with more than one
    temporal grid lands inside the video's temporal positions."""
    ids = list(input_ids)
    start = ids.index(video_token_id)
    t, h, w = (int(x) for x in video_grid_thw)
    h, w = h // spatial_merge_size, w // spatial_merge_size
    text = np.broadcast_to(np.arange(start), (3, start))
    grid = np.indices((t, h, w)).reshape(3, -1).astype(np.float64)
    grid[0] = np.floor(grid[0] * (float(second_per_grid_t) * float(tokens_per_second)))  # vLLM's order
    video = grid.astype(np.int64) + start
    after = len(ids) - start - t * h * w
    tail = np.broadcast_to(np.arange(after), (3, after)) + video.max() + 1
    return np.concatenate([text, video, tail], axis=1)


def teacher_forced_logprobs(
    model: Any,
    processor: Any,
    frames: Sequence[np.ndarray],
    times_s: Sequence[float],
    prompt: str,
    duration_s: float | None,
    token_ids: Sequence[int],
    positions: str = "transformers",
) -> np.ndarray:
    """(len(token_ids), vocab) float64 log-softmax of the transformers `model` at each of
    `token_ids`, fed after the prompt (one forward pass over prompt + tokens). `positions`:
    ``transformers`` (the model's own M-RoPE positions: Qwen's reference ones when `load_qwen`
    installed `models.rope_positions`, else the installed transformers') or ``qwen``
    (`qwen_reference_positions` handed in, what vLLM uses)."""
    import torch

    inputs = batch_video_inputs(processor, [frames], [times_s], [prompt], durations_s=[duration_s])
    n_prompt = inputs["input_ids"].shape[1]
    tail = torch.tensor([list(token_ids)], dtype=inputs["input_ids"].dtype)
    extended = dict(inputs)
    extended["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    for key, fill in (("attention_mask", 1), ("mm_token_type_ids", 0)):
        if key in inputs:
            pad = torch.full_like(tail, fill, dtype=inputs[key].dtype)
            extended[key] = torch.cat([inputs[key], pad], dim=1)
    if positions == "qwen":
        cfg = model.config
        pos = qwen_reference_positions(
            extended["input_ids"][0].tolist(), inputs["video_grid_thw"][0].tolist(),
            float(inputs["second_per_grid_ts"][0]), cfg.video_token_id,
            cfg.vision_config.spatial_merge_size, cfg.vision_config.tokens_per_second)
        extended["position_ids"] = torch.from_numpy(pos)[:, None, :]
    elif positions != "transformers":
        raise ValueError(f"positions must be transformers or qwen, not {positions!r}")
    extended = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in extended.items()}
    with torch.inference_mode():
        logits = model(**extended).logits[0, n_prompt - 1 : n_prompt - 1 + len(token_ids)]
    return torch.log_softmax(logits.double(), dim=-1).cpu().numpy()


@dataclass
class GreedyComparison:
    """vLLM's greedy path against transformers' log-probs on it."""

    n_tokens: int
    max_abs_diff: float
    """Largest |log p_vLLM(t) - log p_transformers(t)| over the path's tokens."""
    first_divergence: int | None
    """First step where transformers' argmax is not vLLM's token (None: the whole path agrees)."""
    margin_at_divergence: float | None
    """Transformers' log-prob gap between its argmax and vLLM's token there (a near-tie if small)."""


def compare_greedy(path: GreedyPath, hf_logprobs: np.ndarray) -> GreedyComparison:
    """Compare one vLLM greedy path with transformers' log-probs along it (`teacher_forced_logprobs`)."""
    ids = np.asarray(path.token_ids)
    hf_chosen = hf_logprobs[np.arange(len(ids)), ids]
    diff = float(np.max(np.abs(hf_chosen - np.asarray(path.logprobs)))) if len(ids) else 0.0
    argmax = hf_logprobs.argmax(axis=-1)
    differs = np.nonzero(argmax != ids)[0]
    first = int(differs[0]) if len(differs) else None
    margin = None if first is None else float(hf_logprobs[first, argmax[first]] - hf_chosen[first])
    return GreedyComparison(len(ids), diff, first, margin)
