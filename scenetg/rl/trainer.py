"""`VideoGRPOTrainer`: TRL's GRPOTrainer with the two things it does not do (DESIGN.md, RL).

1. **Video through every pass.** TRL 1.16 wires only images through its forward passes: with a
   video prompt, generation sees the video but the policy, old and reference log-prob passes get
   no ``pixel_values_videos`` — training would silently ignore the video. Here each row's frames
   are decoded once (`rl.samples.sample_video`, through a `FrameCache`), turned into Qwen2.5-VL
   inputs with the real sampled fps (`models.qwen.processor_video_inputs`), and the per-sample
   video tensors (``pixel_values_videos`` rows, ``video_grid_thw``, ``second_per_grid_ts``) go
   with the batch through TRL's shuffle/split into every forward pass. ``mm_token_type_ids``
   (which Qwen needs to build its 3-D positions) is rebuilt from the ``<|video_pad|>`` ids.
   The G rows of a prompt carry one video: policy and reference encode it once per pass
   (`models.shared_video_encoding`, exact; ``share_video_encoding: false`` turns it off).
2. **Token-aware KL.** TRL adds ``self.beta * per_token_kl`` to the per-token loss; during the
   loss this trainer's ``beta`` is a `TokenBeta`: a float equal to β (so every ``beta != 0``
   branch of TRL is unchanged) whose product with the KL tensor is ``β_t · kl_t`` (β_ts on
   timestamp tokens). Every `loss_type` is kept; with β_ts = β the loss is TRL's, bit for bit.

3. **Video in vLLM rollouts** (``grpo.use_vllm``, colocate mode): TRL hands vLLM images only;
   `_generate_single_turn` gives the `VideoLLM` wrapper around TRL's ``LLM`` each prompt's
   frames and metadata (`rl.vllm_video`). Server mode is refused (its API carries no video).
   The engine and its weight sync are TRL's with the changes of `rl.vllm_sync` (the policy's
   dtype, vLLM's layerwise reload on its CPU build, the encoder cache reset after a sync that
   can change the vision tower). The log-prob passes add the logit bias vLLM samples with
   (`rl.logit_bias`: the vision placeholders' -100), so TRL's importance-sampling ratio compares
   one distribution computed by two engines.

Overridden TRL internals (`TRL_OVERRIDES`, and `VLLM_INTERNALS` of TRL's vLLM backend) are
checked by `check_trl_internals`, which fails loudly on a TRL version whose code differs where we
rely on it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

from scenetg.errors import ConfigError
from scenetg.grounding.samples import FrameSampling, SampledVideo, sample_video
from scenetg.models.qwen import (
    processor_video_inputs,
    render_chat,
    speedup_or_stock,
    video_processor_kwargs,
)
from scenetg.models.rope_positions import reference_positions_or_stock
from scenetg.models.runner import decode_attention, resolve_decode
from scenetg.models.shared_video_encoding import share_video_encoding as set_video_sharing
from scenetg.models.vision_windows import install_window_batching
from scenetg.rl.kl import kl_coefficients, timestamp_token_mask
from scenetg.rl.logit_bias import lm_head_bias, sampling_logit_bias
from scenetg.rl.resume import FullModelResume
from scenetg.rl.vllm_sync import GRPO_BUILDS_BACKEND, SYNC_INTERNALS, video_vllm_backend
from scenetg.rl.vllm_video import VideoLLM, check_vllm_for_video, vllm_video_item

TRL_VERSION = "1.16"
"""The TRL minor version whose internals the overrides below were written against."""

TRL_OVERRIDES = {
    # method -> source fragments our override relies on
    "_compute_loss": ("per_token_loss = per_token_loss + self.beta * per_token_kl",),
    "_get_per_token_logps_and_entropies": (
        "outputs = model(**model_inputs, labels=labels, fused_lm_head=True)",
    ),
    "_generate": ("prompt_ids, images, multimodal_fields = self._tokenize_prompts(prompts)",),
    "_generate_single_turn": ("for k, v in multimodal_fields.items():",),
    "_prepare_inputs": ("generation_batch = shuffle_sequence_dict(generation_batch)",),
}

VLLM_INTERNALS = {
    # TRL's vLLM backend (trl.generation.vllm_generation.VLLMGeneration), method -> fragments that
    # `VideoLLM` and `_generate_single_turn` rely on: the one LLM object it builds and calls, the
    # order it gathers prompts in across a tensor-parallel group, its use of the prompt ids
    "_init_vllm": ("self.llm = LLM(",),
    "generate": (
        'vllm_prompts = [{"prompt_token_ids": ids} for ids in all_prompts]',
        "torch.distributed.all_gather_object(gathered_prompts, prompts, group=self.tp_group)",
        "all_prompts = [p for sublist in gathered_prompts for p in sublist]",
        "all_outputs = self.llm.generate(vllm_prompts, sampling_params=sampling_params, use_tqdm=False)",
    ),
}
GRPO_VLLM_CALL = ("_generate_single_turn", "self.vllm_generation.generate(\n                prompts=prompt_ids,")


def check_trl_source(what: str, checks: Sequence[tuple[type, str, Sequence[str]]], revisit: str) -> None:
    """RuntimeError unless the installed TRL is `TRL_VERSION`.x and each ``(class, method,
    fragments)`` still contains its fragments: the one guard of every TRL override (`what` and
    `revisit` name ours in the message)."""
    import trl

    if not trl.__version__.startswith(TRL_VERSION + "."):
        raise RuntimeError(
            f"scenetg's {what} relies on TRL {TRL_VERSION}.x internals; installed TRL is "
            f"{trl.__version__}: install trl~={TRL_VERSION}.0"
        )
    for cls, name, fragments in checks:
        source = inspect.getsource(getattr(cls, name))
        for fragment in fragments:
            if fragment not in source:
                raise RuntimeError(
                    f"TRL {trl.__version__}: {cls.__name__}.{name} no longer contains {fragment!r}; "
                    f"{revisit} must be revisited"
                )


def check_trl_internals() -> None:
    """Raise RuntimeError when the installed TRL is not the version the overrides target."""
    check_trl_source("GRPO trainer", [], "the video/KL overrides")  # the version, before its internals
    from trl.generation.vllm_generation import VLLMGeneration

    checks = [(GRPOTrainer, name, frags) for name, frags in TRL_OVERRIDES.items()]
    checks += [(VLLMGeneration, name, frags) for name, frags in VLLM_INTERNALS.items()]
    checks += [(VLLMGeneration, name, frags) for name, frags in SYNC_INTERNALS.items()]
    checks.append((GRPOTrainer, GRPO_VLLM_CALL[0], (GRPO_VLLM_CALL[1],)))
    checks.append((GRPOTrainer, GRPO_BUILDS_BACKEND[0], (GRPO_BUILDS_BACKEND[1],)))
    check_trl_source("GRPO trainer", checks, "the video/KL overrides")


class TokenBeta(float):
    """β as TRL sees it, with per-token coefficients for the KL product.

    Equal to β as a float (so TRL's ``if self.beta != 0.0`` branches run as for plain GRPO);
    ``beta * per_token_kl`` returns ``coeff * per_token_kl`` with `coeff` the (B, T) β_t, and
    keeps the KL tensor for the timestamp/other logs."""

    def __new__(cls, beta: float, coeff: torch.Tensor):
        obj = super().__new__(cls, float(beta))
        obj.coeff = coeff
        obj.kl = None
        return obj

    def __mul__(self, other):
        if isinstance(other, torch.Tensor) and other.dim() == 2:
            if other.shape != self.coeff.shape:  # never fall back to plain β silently
                raise RuntimeError(
                    f"per-token KL {tuple(other.shape)} vs timestamp mask {tuple(self.coeff.shape)}"
                )
            self.kl = other.detach()
            return self.coeff.to(other.device, other.dtype) * other
        return float(self) * other

    __rmul__ = __mul__


@dataclass
class VideoBatch:
    """Per-sample video tensors of a batch, in row order: ``pixel_values_videos`` split into one
    tensor per sample (TRL shuffles and splits lists by row), grids (B, 3), seconds per grid (B,)."""

    pixel_values: list[torch.Tensor]
    grid_thw: torch.Tensor
    second_per_grid_ts: torch.Tensor

    @classmethod
    def from_processor(cls, inputs: Any) -> VideoBatch:
        grid = inputs["video_grid_thw"]
        rows = grid.prod(-1).tolist()
        return cls(
            list(torch.split(inputs["pixel_values_videos"], rows, dim=0)),
            grid,
            inputs["second_per_grid_ts"].reshape(-1),
        )

    def model_kwargs(self, start: int, end: int, device: Any) -> dict[str, torch.Tensor]:
        return {
            "pixel_values_videos": torch.cat(self.pixel_values[start:end], dim=0).to(device),
            "video_grid_thw": self.grid_thw[start:end].to(device),
            "second_per_grid_ts": self.second_per_grid_ts[start:end].to(device),
        }


class _VideoForward:
    """Calls `model` with the video tensors of the rows it is given. TRL's log-prob loop calls the
    model on consecutive row chunks (0..b, b..2b, ...); the cursor follows them."""

    def __init__(self, model: Any, video: VideoBatch, video_token_id: int):
        self.model, self.video, self.video_token_id = model, video, video_token_id
        self.cursor = 0

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        start, end = self.cursor, self.cursor + input_ids.shape[0]
        self.cursor = end
        kwargs.update(self.video.model_kwargs(start, end, input_ids.device))
        kwargs["mm_token_type_ids"] = (input_ids == self.video_token_id).long() * 2
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class VideoGRPOTrainer(FullModelResume, GRPOTrainer):
    """GRPO on grounding rows (``prompt``, ``video_path``, ``duration_s``, ``start_s``, ``end_s``):
    video through generation and every log-prob pass, token-aware KL. `beta_timestamp` is β_ts;
    β is ``args.beta``. Full fine-tuning resume restores the weights (`rl.resume`)."""

    def __init__(
        self,
        *args: Any,
        sampling: FrameSampling,
        beta_timestamp: float,
        frame_cache: Any = None,
        share_video_encoding: bool = True,
        decode: str = "plain",
        **kwargs: Any,
    ):
        check_trl_internals()
        grpo_args = kwargs.get("args")
        use_vllm = grpo_args is not None and grpo_args.use_vllm
        if use_vllm:
            check_vllm_for_video(grpo_args.vllm_mode)  # before TRL builds the engine
        # vLLM rollouts: TRL's backend with the policy's dtype and a sync that works on vLLM's CPU
        # build and never leaves stale vision features (`rl.vllm_sync`)
        with video_vllm_backend() if use_vllm else contextlib.nullcontext():
            super().__init__(*args, **kwargs)
        if self.use_vllm:
            engine = self.vllm_generation
            engine.llm = VideoLLM(engine.llm, video_processor_kwargs(self.processing_class),
                                  self._video_pad_token_id)
        # the log-prob passes score the distribution vLLM samples from (`rl.logit_bias`)
        self.sampling_logit_bias = sampling_logit_bias(self.args)
        # G rollouts of a prompt carry one video: policy and reference encode it once per pass
        # (exact; `models.shared_video_encoding`), and batch their vision windows as `load_qwen`
        # does (`models.vision_windows`). Also TRL's own reference copy (full fine-tuning),
        # which it loads itself, not through `load_qwen`; that copy also gets Qwen2.5-VL's
        # reference M-RoPE positions, as the policy has them (`models.rope_positions`).
        for model in (self.model, self.ref_model):
            if model is not None:
                reference_positions_or_stock(model)
                speedup_or_stock(install_window_batching, model)
                speedup_or_stock(set_video_sharing, model, enabled=share_video_encoding)
        if self.args.use_liger_kernel:
            raise ConfigError("use_liger_kernel: the token-aware KL loss needs TRL's own loss path")
        if not 0.0 <= beta_timestamp <= self.beta:
            raise ConfigError(f"kl.beta_timestamp must be in [0, beta={self.beta}], got {beta_timestamp}")
        if self._video_pad_token_id is None:
            raise ConfigError("the model's tokenizer has no <|video_pad|> token: not a video model")
        self.sampling, self.frame_cache = sampling, frame_cache
        # transformers rollouts choose attention as `scenetg ground --decode` does (config `decode`)
        on_cuda = self.accelerator.device.type == "cuda"
        self.rollout_decode = resolve_decode(decode, on_cuda)
        self.beta_timestamp = float(beta_timestamp)
        self._rows_videos: list[SampledVideo] | None = None
        self._video: VideoBatch | None = None

    # ----------------------------------------------------------------------- video inputs

    def _sample_videos(self, rows: Sequence[dict]) -> list[SampledVideo]:
        """Each row's frames; rows of one video (G rollouts) share one decode."""
        seen: dict[tuple[str, float], SampledVideo] = {}
        out = []
        for row in rows:
            key = (str(row["video_path"]), float(row["duration_s"]))
            if key not in seen:
                seen[key] = sample_video(key[0], key[1], self.sampling, self.frame_cache)
            out.append(seen[key])
        return out

    def _tokenize_prompts(self, prompts: list):
        """Prompt ids and video tensors for generation, from our decoded frames (TRL's own path
        would ask the processor to load the video from a path, without the real fps). TRL repeats
        each prompt G times: the processor runs once per distinct (video, prompt) and its rows
        are repeated."""
        videos = self._rows_videos
        if videos is None or len(videos) != len(prompts):
            raise RuntimeError("video rows and prompts are out of step")
        texts = [render_chat(self.processing_class, p) for p in prompts]
        first: dict[tuple[int, str], int] = {}
        row_of = [first.setdefault((id(v), t), len(first)) for v, t in zip(videos, texts, strict=True)]
        unique = sorted(first, key=first.get)
        videos_u = [videos[row_of.index(j)] for j in range(len(unique))]
        inputs = processor_video_inputs(
            self.processing_class,
            [t for _, t in unique],
            [v.frames for v in videos_u],
            [v.times_s for v in videos_u],
            durations_s=[v.duration_s for v in videos_u],
            padding_side="left",
        )
        keep = inputs["attention_mask"].bool()
        ids_u = [ids[m].tolist() for ids, m in zip(inputs["input_ids"], keep, strict=True)]
        types_u = [t[m].tolist() for t, m in zip(inputs["mm_token_type_ids"], keep, strict=True)]
        video_u = VideoBatch.from_processor(inputs)
        self._video = VideoBatch(
            [video_u.pixel_values[j] for j in row_of],
            video_u.grid_thw[row_of],
            video_u.second_per_grid_ts[row_of],
        )
        fields = {
            "pixel_values_videos": torch.cat(self._video.pixel_values, dim=0),
            "video_grid_thw": self._video.grid_thw,
            "second_per_grid_ts": self._video.second_per_grid_ts,
            "mm_token_type_ids": [types_u[j] for j in row_of],  # per-token: TRL left-pads it
        }
        return [ids_u[j] for j in row_of], None, fields

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs):
        """vLLM rollouts get each prompt's video (`VideoLLM`); transformers rollouts are TRL's."""
        if self.use_vllm:
            self.vllm_generation.llm.videos = self._vllm_videos(len(prompt_ids))
        with decode_attention(self.rollout_decode):
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs
            )

    def _vllm_videos(self, n_prompts: int) -> list:
        """This batch's videos as vLLM inputs, in prompt order; with tensor parallelism, gathered
        over the group in the order TRL gathers the prompts."""
        videos = self._rows_videos
        if videos is None or len(videos) != n_prompts:
            raise RuntimeError("video rows and prompts are out of step")
        items: dict[int, tuple] = {}
        for video in videos:  # G rollouts share one video: stack its frames once
            if id(video) not in items:
                items[id(video)] = vllm_video_item(video)
        local = [items[id(v)] for v in videos]
        engine = self.vllm_generation
        if engine.tensor_parallel_size <= 1:
            return local
        gathered: list = [None] * engine.tensor_parallel_size
        torch.distributed.all_gather_object(gathered, local, group=engine.tp_group)
        return [item for rank_items in gathered for item in rank_items]

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        head_bias = lm_head_bias(self.accelerator.unwrap_model(model), self.sampling_logit_bias)
        if self._video is not None:
            model = _VideoForward(model, self._video, self._video_pad_token_id)
        with head_bias:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )

    def _generate_and_score_completions(self, inputs):
        self._rows_videos = self._sample_videos(inputs)
        try:
            output = super()._generate_and_score_completions(inputs)
            video = self._video
        finally:
            self._rows_videos, self._video = None, None
        output["pixel_values_videos"] = video.pixel_values  # a list: shuffled/split per row
        output["video_grid_thw"] = video.grid_thw
        output["second_per_grid_ts"] = video.second_per_grid_ts
        output["timestamp_mask"] = timestamp_token_mask(self._tokenizer, output["completion_ids"])
        return output

    # --------------------------------------------------------------------- token-aware KL

    def _compute_loss(self, model, inputs):
        self._video = VideoBatch(
            list(inputs["pixel_values_videos"]), inputs["video_grid_thw"], inputs["second_per_grid_ts"]
        )
        coeff = kl_coefficients(inputs["timestamp_mask"], self.beta, self.beta_timestamp)
        with self._token_beta(coeff) as token_beta:
            loss = super()._compute_loss(model, inputs)
        self._video = None
        if token_beta.kl is not None:
            self._log_split_kl(token_beta.kl, inputs)
        return loss

    @contextlib.contextmanager
    def _token_beta(self, coeff: torch.Tensor):
        plain = self.beta
        token_beta = TokenBeta(plain, coeff)
        self.beta = token_beta
        try:
            yield token_beta
        finally:
            self.beta = plain

    def _log_split_kl(self, kl: torch.Tensor, inputs: dict) -> None:
        """Mean KL over timestamp tokens and over the other completion tokens (all processes)."""
        mode = "train" if self.model.training else "eval"
        mask = inputs["completion_mask"].bool()
        if "tool_mask" in inputs:
            mask &= inputs["tool_mask"].bool()
        ts = inputs["timestamp_mask"].bool() & mask
        other = mask & ~ts
        for name, sel in (("kl_timestamp", ts), ("kl_other", other)):
            local = torch.stack([(kl * sel).sum(), sel.sum().float()])
            total = self.accelerator.reduce(local, reduction="sum")
            if total[1] > 0:
                self._metrics[mode][name].append((total[0] / total[1]).item())
