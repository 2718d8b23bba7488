"""One vision encoding per distinct video in a batch (Qwen2.5-VL as transformers 5.24 runs it).

A GRPO step carries each prompt's video once per rollout (TRL repeats prompts G times), and a
`ground`/`answer` batch can hold several queries of one video. Stock Qwen2.5-VL encodes every
row's ``pixel_values_videos``, so the vision tower does the same work G times in generation and
in each log-prob pass. `share_video_encoding(model)` replaces the ``get_video_features`` of the
model's `Qwen2_5_VLModel` (an instance attribute: the class and other models are untouched) with
one that finds identical videos in the batch (same ``video_grid_thw`` and equal pixel rows),
encodes each distinct video once and hands every row its video's features.

Exact, not approximate: Qwen2.5-VL's vision tower attends only within one video (full-attention
blocks per frame, window blocks inside one video's windows: ``cu_seqlens`` from the grid), so a
video's features do not depend on the other videos in the batch (up to the float rounding of
differently sized matmuls). Rows get their features by indexing, whose backward sums the rows'
gradients into the one encoding, as G separate encodes sum into the vision weights.

Identity by content, not by bookkeeping: the trainer knows which rows share a video when it builds
them, but the rows then pass through TRL's generate, shuffle and split and through accelerate's
model wrappers before they reach the model; comparing the pixel rows where they are encoded
needs none of that to stay in step, costs one read of the rows (``torch.equal``, after a cheap
probe), and covers every caller of the model alike.

`check_transformers_internals` fails loudly when the installed transformers' code differs from
what this relies on (`TRANSFORMERS_INTERNALS`).
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import torch

SHARED_MARK = "_scenetg_shares_video_encoding"
"""Set on the installed function, so installing twice is a no-op and removal finds it."""

PROBE_VALUES = 32
"""Pixel values compared per video before the full comparison (a cheap filter, one sync)."""

TRANSFORMERS_INTERNALS = {
    # (module, qualified name) -> source fragments (whitespace ignored) the sharing relies on; a
    # tuple of fragments: one of them
    ("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLModel.forward"): (
        # the forward looks the encoder up on the instance and concatenates per-video outputs
        # (5.24's spelling, or 5.17's: the [vllm] extra's transformers)
        "self.get_video_features(pixel_values_videos, video_grid_thw",
        ('torch.cat(mm_encoder_outputs["video"].pooler_output, dim=0)',
         "video_embeds = self.get_video_features(pixel_values_videos, video_grid_thw, **kwargs)"
         ".pooler_output\nvideo_embeds = torch.cat(video_embeds, dim=0)"),
    ),
    ("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLModel.get_video_features"): (
        "self.visual(pixel_values_videos, grid_thw=video_grid_thw",
        "torch.split(vision_outputs.pooler_output, split_sizes)",
    ),
    (
        "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
        "Qwen2_5_VisionTransformerPretrainedModel.forward",
    ): (
        # attention stays inside one video: sequence and window boundaries come from the grid
        "cu_seqlens, max_seqlen = get_vision_attention_seqlens(grid_thw",
        "window_index, cu_window_seqlens = get_vision_window_index(",
        "merged_hidden_states = merged_hidden_states[reverse_indices, :]",
    ),
    (
        "transformers.generation.utils",
        "GenerationMixin._prepare_multimodal_encoder_kwargs_for_generation",
    ): (
        # generate encodes the video before prefill through the same instance attribute
        'encoder_fn := getattr(self.base_model, f"get_{modality}_features", None)',
    ),
}


ABSENT_IS_FINE = {
    ("transformers.generation.utils", "GenerationMixin._prepare_multimodal_encoder_kwargs_for_generation"),
}
"""Internals that may be missing altogether: transformers 5.17 has no pre-encoding step in
``generate``; its prefill runs the model's forward, which calls the same instance attribute."""


def _squash(text: str) -> str:
    return "".join(text.split())


def check_transformers_internals() -> None:
    """Raise RuntimeError when transformers' Qwen2.5-VL video path is not the code this was
    written against (transformers 5.24, and 5.17's equivalent spelling): sharing must then be
    revisited, never guessed."""
    import importlib

    import transformers

    for (module_name, qualname), fragments in TRANSFORMERS_INTERNALS.items():
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is None and (module_name, qualname) in ABSENT_IS_FINE:
            continue
        source = _squash(inspect.getsource(obj)) if obj is not None else ""
        for fragment in fragments:
            options = fragment if isinstance(fragment, tuple) else (fragment,)
            if not any(_squash(option) in source for option in options):
                fragment = options[0]
                raise RuntimeError(
                    f"transformers {transformers.__version__}: {qualname} no longer contains "
                    f"{fragment!r}; scenetg's shared video encoding was written against "
                    "transformers 5.24 and must be revisited (install transformers==5.24.*, or turn "
                    "it off: share_video_encoding: false in a train config)"
                )


def distinct_videos(pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[int]:
    """For each video of a batch, the index of the first video identical to it (itself when it
    is the first): same grid and equal pixel rows (``torch.equal``; NaN never matches)."""
    grids = [tuple(int(x) for x in g) for g in grid_thw.tolist()]
    rows = [t * h * w for t, h, w in grids]
    if len(rows) < 2:
        return list(range(len(rows)))
    pieces = torch.split(pixel_values, rows)
    steps = torch.arange(PROBE_VALUES, device=pixel_values.device)
    probes = torch.stack([  # integer positions: float ones round past the end of large videos
        p.reshape(-1)[steps * (p.numel() - 1) // (PROBE_VALUES - 1)] for p in pieces
    ]).cpu()
    first: list[int] = []
    seen: dict[tuple, list[int]] = {}
    for i, piece in enumerate(pieces):
        key = (grids[i], probes[i].numpy().tobytes())
        candidates = seen.setdefault(key, [])
        match = next((j for j in candidates if torch.equal(piece, pieces[j])), None)
        if match is None:
            candidates.append(i)
            match = i
        first.append(match)
    return first


def _stock_only(module: Any, kwargs: dict) -> bool:
    """Calls the shared path must leave to the stock encoder: per-batch precomputed tensors
    (``video_cu_seqlens`` ...), per-layer outputs, or tuple outputs."""
    cfg = getattr(getattr(module, "visual", None), "config", None)
    return (
        any(isinstance(v, torch.Tensor) for v in kwargs.values())
        or bool(kwargs.get("output_hidden_states") or kwargs.get("output_attentions"))
        or bool(getattr(cfg, "output_hidden_states", False) or getattr(cfg, "output_attentions", False))
        or kwargs.get("return_dict") is False
    )


def _shared_get_video_features(self, pixel_values_videos, video_grid_thw=None, **kwargs):
    """`Qwen2_5_VLModel.get_video_features`, each distinct video encoded once (module docstring)."""
    stock = type(self).get_video_features
    if video_grid_thw is None or _stock_only(self, kwargs):
        return stock(self, pixel_values_videos, video_grid_thw, **kwargs)
    first = distinct_videos(pixel_values_videos, video_grid_thw)
    unique = sorted(set(first))
    if len(unique) == len(first):
        return stock(self, pixel_values_videos, video_grid_thw, **kwargs)
    rows = video_grid_thw.prod(-1).tolist()
    pieces = torch.split(pixel_values_videos, rows)
    out = stock(
        self, torch.cat([pieces[i] for i in unique]), video_grid_thw[unique], **kwargs
    )
    slot = {v: k for k, v in enumerate(unique)}
    return _expand(out, [slot[f] for f in first], [rows[i] for i in unique])


def _expand(out: Any, index: list[int], unique_rows: list[int]) -> Any:
    """The encoder output of the distinct videos, laid out for every row (``index[r]`` is row r's
    distinct video): per-video features and, when present, the per-patch last hidden state."""
    pooled = out.pooler_output
    if not isinstance(pooled, (tuple, list)) or len(pooled) != len(unique_rows):
        raise RuntimeError(
            "shared video encoding: get_video_features returned "
            f"{type(pooled).__name__} for {len(unique_rows)} videos, not one tensor per video"
        )
    out.pooler_output = tuple(pooled[j] for j in index)
    last = getattr(out, "last_hidden_state", None)
    if last is not None:
        if last.shape[0] != sum(unique_rows):
            raise RuntimeError("shared video encoding: the vision tower's patch rows do not match the grids")
        per_video = torch.split(last, unique_rows)  # windows are permuted within each video only
        out.last_hidden_state = torch.cat([per_video[j] for j in index])
    return out


def _qwen25_vl_models(model: Any) -> list[Any]:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    return [m for m in model.modules() if type(m) is Qwen2_5_VLModel]


def share_video_encoding(model: Any, enabled: bool = True) -> int:
    """Install (or with ``enabled=False`` remove) one-encoding-per-distinct-video on every
    `Qwen2_5_VLModel` inside `model` (PEFT and accelerate wrappers included). Returns how many
    it covers; other architectures are left as they are (0). Raises RuntimeError when
    transformers' code differs (`check_transformers_internals`)."""
    targets = _qwen25_vl_models(model)
    if enabled and targets:
        check_transformers_internals()
    for module in targets:
        installed = getattr(module.__dict__.get("get_video_features"), SHARED_MARK, False)
        if enabled and not installed:
            # a bound method in the instance dict: deepcopy rebinds it to the copy
            module.get_video_features = types.MethodType(_shared_get_video_features, module)
        elif not enabled and installed:
            del module.get_video_features
    return len(targets)


def shares_video_encoding(model: Any) -> bool:
    """Whether every Qwen2.5-VL model inside `model` encodes each distinct video once."""
    targets = _qwen25_vl_models(model)
    return bool(targets) and all(
        getattr(m.__dict__.get("get_video_features"), SHARED_MARK, False) for m in targets
    )


_shared_get_video_features.__dict__[SHARED_MARK] = True
