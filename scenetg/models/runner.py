"""One batched greedy-generation path for every MLLM job (captions, grounding, answering).

`QwenRunner` holds a loaded model + processor and a deterministic generation config; videos go
through `batch_video_inputs` with their real duration, so the sampled fps (and every time the
model sees) is right. Captioning, `scenetg ground` and `scenetg answer` all call `generate`.
Several queries of one video in a batch share one vision encoding (`load_qwen`'s default).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.errors import ConfigError
from scenetg.models.batch_size import resolve_batch_size
from scenetg.models.clip import load_clip
from scenetg.models.qwen import batch_video_inputs, greedy_generation_config, load_qwen
from scenetg.models.vllm_runner import BACKENDS, VLLMRunner, check_vllm_device

__all__ = [
    "BACKENDS", "DECODE_MODES", "QwenRunner", "as_clip", "as_runner", "load_runner",
    "vllm_memory_share",
]

DEFAULT_MAX_NEW_TOKENS = 256
"""Room for a short ``<think>`` plus the answer."""

DEFAULT_BATCH_SIZE = "auto"
"""Items per generate call: 4 on a CPU, by free GPU memory on CUDA (`scenetg.models.batch_size`)."""

DECODE_MODES = ("auto", "no-cudnn", "static", "plain")
"""How decode steps run attention (`QwenRunner`, docs/CHOICES.md; H200 figures for a 7B-size model
after a 128-frame prompt, docs/BENCHMARKS.md):
- ``no-cudnn``: SDPA limited to the flash / memory-efficient kernels (math as a last resort).
  cuDNN attention builds a graph per new shape and each decode step has a new KV length (60 ms
  a step at batch 1 on unseen lengths, up to 0.5 s for one step); these kernels have no such
  cost: 38 ms/step at batch 1, 19 ms/step at batch 8.
- ``static``: the above plus transformers' static KV cache (fixed shapes; 18.5 ms/step once
  compiled, but each new prompt length pays a ~25 s compile).
- ``plain``: whatever torch picks (cuDNN on recent GPUs: 20 ms/step at batch 1 once every length
  is warm). ``auto``: ``no-cudnn`` on CUDA (grounding runs in batches), ``plain`` elsewhere."""


def resolve_decode(decode: str, on_cuda: bool) -> str:
    """`decode` with ``auto`` made concrete: ``no-cudnn`` on CUDA, ``plain`` elsewhere."""
    if decode not in DECODE_MODES:
        raise ConfigError(f"decode mode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
    return ("no-cudnn" if on_cuda else "plain") if decode == "auto" else decode


def decode_attention(decode: str):
    """A context for generating in mode `decode` (resolved): SDPA kept off cuDNN attention for
    ``no-cudnn`` and ``static``, torch's own choice otherwise. GRPO rollouts use it too."""
    import contextlib

    if decode not in ("no-cudnn", "static"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class QwenRunner:
    """A loaded MLLM + processor with a greedy generation config: batches of videos and prompts
    in, generated texts out."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        decode: str = "auto",
    ):

        self.model, self.processor = model, processor
        self.generation_config = greedy_generation_config(model, max_new_tokens)
        on_cuda = getattr(getattr(model, "device", None), "type", "cpu") == "cuda"
        self.decode = resolve_decode(decode, on_cuda)
        if self.decode == "static":
            self.generation_config.cache_implementation = "static"

    def batch_size(self, value: int | str, tokens_per_item: int) -> int:
        """Items per generate call: `value`, or for ``auto`` what fits the free GPU memory for
        items of `tokens_per_item` tokens (4 on a CPU)."""

        return resolve_batch_size(value, self.model, tokens_per_item)

    @classmethod
    def load(
        cls,
        model_id_or_path: str | Path,
        dtype: str = "auto",
        device: str = "auto",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        trust_remote_code: bool = False,
        flag: str = "--model",
        decode: str = "auto",
        share_video_encoding: bool = True,
    ) -> QwenRunner:

        model, processor = load_qwen(
            model_id_or_path, dtype=dtype, device=device,
            trust_remote_code=trust_remote_code, flag=flag,
            share_video_encoding=share_video_encoding,
        )
        return cls(model, processor, max_new_tokens, decode)

    def generate(
        self,
        videos: Sequence[Sequence[np.ndarray]],
        times_s: Sequence[Sequence[float]],
        prompts: str | Sequence[str],
        durations_s: Sequence[float | None],
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """One greedy completion per (video, prompt), left-padded in one ``generate`` call; the
        special tokens are dropped and the text stripped."""
        import torch


        if not videos:
            return []
        gen = self.generation_config
        if max_new_tokens is not None and max_new_tokens != gen.max_new_tokens:
            gen = copy.deepcopy(gen)
            gen.max_new_tokens = int(max_new_tokens)
        inputs = batch_video_inputs(
            self.processor, videos, times_s, prompts, durations_s=list(durations_s),
            padding_side="left",
        ).to(self.model.device)
        with torch.inference_mode(), decode_attention(self.decode):
            out = self.model.generate(**inputs, generation_config=gen)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [
            t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        ]


    def sample_scored(
        self,
        videos: Sequence[Sequence[np.ndarray]],
        times_s: Sequence[Sequence[float]],
        prompts: str | Sequence[str],
        durations_s: Sequence[float | None],
        n: int,
        temperature: float = 1.0,
        seed: int = 0,
        max_new_tokens: int | None = None,
        include_greedy: bool = True,
    ) -> list[list[tuple[str, float]]]:
        """Several completions per (video, prompt), each with its sequence log-prob: the greedy
        one first (`include_greedy`), then `n` samples at `temperature` (no top-k / top-p),
        drawn from torch's generator seeded with `seed` (the caller's global RNG state is left
        as it was). The log-prob is the sum over the generated tokens, up to and including
        the first end token, of log-softmax of the model's raw logits (temperature 1): the
        model's own probability of the text, whatever temperature drew it. Separate from
        `generate` (the one greedy path), for `ground --candidates`."""
        import torch

        if not videos:
            return []
        if n < 0 or not (temperature > 0 and np.isfinite(temperature)):
            raise ConfigError("samples must be >= 0 and temperature a finite number > 0")
        base = self.generation_config
        new = int(max_new_tokens if max_new_tokens is not None else base.max_new_tokens)
        scored = copy.deepcopy(base)
        scored.max_new_tokens = new
        scored.return_dict_in_generate = scored.output_logits = True
        plans = []
        if include_greedy:
            plans.append((scored, 1))
        if n:
            sampling = copy.deepcopy(scored)
            sampling.do_sample, sampling.temperature = True, float(temperature)
            sampling.top_k, sampling.top_p = 0, 1.0
            sampling.num_return_sequences = int(n)
            plans.append((sampling, int(n)))
        inputs = batch_video_inputs(
            self.processor, videos, times_s, prompts, durations_s=list(durations_s),
            padding_side="left",
        ).to(self.model.device)
        prompt_len = inputs["input_ids"].shape[1]
        eos = base.eos_token_id
        eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos or []),
                               device=self.model.device)
        results: list[list[tuple[str, float]]] = [[] for _ in videos]
        on_cuda = self.model.device.type == "cuda"
        with torch.inference_mode(), decode_attention(self.decode), torch.random.fork_rng(
            devices=[self.model.device] if on_cuda else []
        ):
            torch.manual_seed(int(seed))
            for gen, count in plans:
                out = self.model.generate(**inputs, generation_config=gen)
                tokens = out.sequences[:, prompt_len:]
                total = torch.zeros(tokens.shape[0], dtype=torch.float64, device=tokens.device)
                ended = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
                for t, logits in enumerate(out.logits):  # one step at a time: no (B, T, V) tensor
                    tok = tokens[:, t]
                    logp = torch.log_softmax(logits.float(), dim=-1).gather(1, tok[:, None])[:, 0]
                    total += torch.where(ended, 0.0, logp.double())
                    ended |= torch.isin(tok, eos_ids)
                texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
                for j, (text, score) in enumerate(zip(texts, total.tolist(), strict=True)):
                    results[j // count].append((text.strip(), float(score)))
        return results


VLLM_GPU_MEMORY = 0.9
"""Share of the GPU's memory vLLM engines of one process take together (vLLM's default)."""


def vllm_memory_share(n_engines: int) -> float:
    """Each engine's ``gpu_memory_utilization`` when `n_engines` vLLM engines share the GPU of one
    process (an eval comparing several MLLMs): each pre-allocates its share, so they split it."""
    return VLLM_GPU_MEMORY / max(1, n_engines)


def load_runner(
    model: str | Path, backend: str = "transformers", dtype: str = "auto", device: str = "auto",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, what: str = "--model", decode: str = "auto",
    gpu_memory_utilization: float = VLLM_GPU_MEMORY,
) -> Any:
    """A runner for `model` on `backend`: `QwenRunner` (transformers; `device`, `decode`) or
    `VLLMRunner` (an in-process vLLM engine on the current GPU, using `gpu_memory_utilization`
    of it). Both take the same `generate` call."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "vllm":

        check_vllm_device(device, "--device", "--backend")

        return VLLMRunner.load(model, dtype=dtype, max_new_tokens=max_new_tokens, flag=what,
                               gpu_memory_utilization=gpu_memory_utilization)
    return QwenRunner.load(
        model, dtype=dtype, device=device, max_new_tokens=max_new_tokens, flag=what, decode=decode
    )


def as_runner(
    model: Any, dtype: str, device: str, max_new_tokens: int, what: str = "--model",
    decode: str = "auto", backend: str = "transformers", gpu_memory_utilization: float = VLLM_GPU_MEMORY,
) -> Any:
    """A runner (`load_runner`) from a model id/path, or `model` itself when it already has
    ``generate`` (a loaded runner, or a stand-in in tests). `what` names the flag in errors."""
    if model is None:
        raise ConfigError(f"an MLLM is needed: set {what}")
    if hasattr(model, "generate") and not isinstance(model, (str, Path)):
        return model
    return load_runner(model, backend, dtype, device, max_new_tokens, what, decode,
                       gpu_memory_utilization)


def as_clip(model: Any, device: str, what: str = "--model") -> Any:
    """A `ClipEncoder` from a name/path, or `model` itself when it already encodes."""
    if model is None:
        raise ConfigError(f"a CLIP model is needed: set {what}")
    if hasattr(model, "encode_images") and not isinstance(model, (str, Path)):
        return model

    return load_clip(model, device=device, flag=what)
