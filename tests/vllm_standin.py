"""A stand-in for vLLM's `LLM` and `SamplingParams` (vLLM needs CUDA; not installed here).

It takes what TRL's colocate backend builds and calls, and does with a video prompt what vLLM's
Qwen2.5-VL path does (vllm-project/vllm#47736): the HF processor on the given frames with the
given `video_metadata`, a placeholder-count check against the prompt's ``<|video_pad|>`` run, then
sampling with the tiny HF model (weights as TRL syncs them) and the processed log-probs of the
sampled tokens. Everything it was given is recorded for the tests.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from scenetg.models.rope_positions import install_reference_positions


@dataclass
class SamplingParams:
    """vLLM's field names (an unknown one, e.g. ``suppress_tokens``, is a TypeError as in vLLM)."""

    n: int = 1
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 16
    logprobs: int | None = None
    logit_bias: dict | None = None
    seed: int | None = None
    stop_token_ids: list | None = None
    skip_special_tokens: bool = True


class _Bias:
    def __init__(self, bias: dict | None):
        self.bias = {int(k): float(v) for k, v in (bias or {}).items()}

    def __call__(self, input_ids, scores):
        for token, value in self.bias.items():
            scores[:, token] += value
        return scores


class StandInLLM:
    instances: list[StandInLLM] = []

    def __init__(self, model: str, **kwargs: Any):
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.kwargs = kwargs
        self.hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(model, dtype=torch.float32).eval()
        install_reference_positions(self.hf)  # vLLM numbers the text after a video as Qwen does
        self.processor = AutoProcessor.from_pretrained(model)
        self.video_pad = self.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        self.loaded: list[str] = []
        self.seen: list[dict] = []
        self.sampling: list[SamplingParams] = []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        self.encoder_cache_resets = 0
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(max_model_len=4096),
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)),
            reset_encoder_cache=self._reset_encoder_cache,
        )
        StandInLLM.instances.append(self)

    def _load_weights(self, weights):
        params = dict(self.hf.named_parameters())
        for name, tensor in weights:
            params[name].data.copy_(tensor)
            self.loaded.append(name)

    def _reset_encoder_cache(self):
        self.encoder_cache_resets += 1

    def reset_prefix_cache(self):
        pass

    def sleep(self, level=1):
        pass

    def wake_up(self, tags=None):
        pass

    def _process(self, row: dict, text: str) -> dict:
        """The HF processor on `text` and the row's video, as vLLM runs it: the row's metadata as
        ``video_metadata`` and its processor kwargs (recorded in `seen`)."""
        from transformers.video_utils import VideoMetadata

        frames, metadata = row["multi_modal_data"]["video"]
        kwargs = dict(row.get("mm_processor_kwargs") or {})
        kwargs.setdefault("do_sample_frames", metadata.get("do_sample_frames", False))
        meta = VideoMetadata(**{k: v for k, v in metadata.items() if k != "do_sample_frames"})
        out = self.processor(text=[text], videos=[list(frames)], video_metadata=[meta],
                             return_tensors="pt", **kwargs)
        self.seen.append({"frames": frames, "metadata": metadata, "kwargs": kwargs, "prompt": text, **out})
        return out

    def _video_inputs(self, row: dict) -> tuple[dict, list[int]]:
        """The video's processor outputs and the prompt ids as vLLM 0.31 runs them: the prompt's
        first ``<|video_pad|>`` expanded to the grid's length (vLLM would read any further pads
        as text; the stand-in refuses them)."""
        out = self._process(row, "<|vision_start|><|video_pad|><|vision_end|>")
        ids = list(row["prompt_token_ids"])
        tokens = int(out["video_grid_thw"].prod()) // self.processor.video_processor.merge_size**2
        if ids.count(self.video_pad) != 1:
            raise ValueError(f"{ids.count(self.video_pad)} <|video_pad|> tokens: vLLM expands one")
        at = ids.index(self.video_pad)
        return out, ids[:at] + [self.video_pad] * tokens + ids[at + 1:]

    def _generate_from_text(self, row: dict, sp: SamplingParams) -> SimpleNamespace:
        """An offline-inference row (``prompt`` text with one ``<|video_pad|>``): vLLM's processor
        expands the placeholder from the video's grid, then decodes (greedy at temperature 0)."""
        if row["prompt"].count("<|video_pad|>") != 1:
            raise ValueError("a video prompt needs exactly one <|video_pad|> placeholder")
        out = self._process(row, row["prompt"])
        greedy = sp.temperature == 0
        with torch.no_grad():
            gen = self.hf.generate(
                **out, do_sample=not greedy, temperature=None if greedy else sp.temperature,
                top_p=None, top_k=None, repetition_penalty=sp.repetition_penalty,
                eos_token_id=sp.stop_token_ids or None, max_new_tokens=sp.max_tokens,
            )
        new = gen[0, out["input_ids"].shape[1]:]
        text = self.processor.tokenizer.decode(new, skip_special_tokens=sp.skip_special_tokens)
        completion = SimpleNamespace(token_ids=new.tolist(), text=text)
        return SimpleNamespace(prompt=row["prompt"], outputs=[completion])

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        from transformers import LogitsProcessorList

        sp = sampling_params
        self.sampling.append(sp)
        if all("prompt" in row for row in prompts):
            return [self._generate_from_text(row, sp) for row in prompts]
        eos = self.hf.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        outputs = []
        for row in prompts:
            video, expanded = self._video_inputs(row)
            ids = torch.tensor([expanded])
            with torch.no_grad():
                gen = self.hf.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    mm_token_type_ids=(ids == self.video_pad).long() * 2,
                    pixel_values_videos=video["pixel_values_videos"],
                    video_grid_thw=video["video_grid_thw"],
                    second_per_grid_ts=video["second_per_grid_ts"],
                    do_sample=True,
                    temperature=sp.temperature,
                    top_p=sp.top_p,
                    top_k=sp.top_k or None,
                    max_new_tokens=sp.max_tokens,
                    logits_processor=LogitsProcessorList([_Bias(sp.logit_bias)]),
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            tokens, logprobs = [], []
            for step, score in enumerate(gen.scores):
                token = int(gen.sequences[0, ids.shape[1] + step])
                lp = float(torch.log_softmax(score[0].float(), -1)[token])
                tokens.append(token)
                logprobs.append({token: SimpleNamespace(logprob=lp, rank=1)})
                if token in eos:
                    break
            completion = SimpleNamespace(token_ids=tokens, logprobs=logprobs)
            outputs.append(SimpleNamespace(prompt_token_ids=list(row["prompt_token_ids"]), outputs=[completion]))
        return outputs


def install(monkeypatch, version: str = "0.30.0", cpu: bool = False) -> type[StandInLLM]:
    """Put the stand-in where TRL's colocate backend looks for vLLM; a fake `vllm` module gives
    the version our own check reads, and a platform: a GPU one (TRL's own weight sync) unless
    `cpu` (vLLM's CPU build: the memory setting's CPU defaults)."""
    import trl.generation.vllm_generation as backend

    fake = types.ModuleType("vllm")
    fake.__version__ = version
    fake.LLM, fake.SamplingParams = StandInLLM, SamplingParams
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = SimpleNamespace(is_cpu=lambda: cpu)
    fake.platforms = platforms
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setattr(backend, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(backend, "LLM", StandInLLM, raising=False)
    monkeypatch.setattr(backend, "SamplingParams", SamplingParams, raising=False)
    StandInLLM.instances = []
    return StandInLLM
