"""One attention call per window length in Qwen-VL vision towers (SDPA and eager attention).

With any attention implementation but flash, transformers' Qwen2-VL / Qwen2.5-VL / Qwen3-VL vision
attention splits the packed sequence at ``cu_seqlens`` and calls attention once per window (or
per frame pair, in full-attention blocks): ~22,000 calls of 64 tokens for one 128-frame prompt
on a 7B, most of its prefill on a GPU. Windows of one length are the same computation, so we
stack them to ``(n_windows, heads, L, head_dim)`` and make one call per distinct length (the
ragged edge windows form their own groups), through the same attention function as before.

The patched forward replaces the library's ``VisionAttention.forward`` on each instance (nothing
global), so it is pinned to that method's source: `install_window_batching` raises `ModelError`
when the installed transformers differs from the version it was written against
(``SCENETG_VISION_WINDOWS=0`` switches it off). Flash implementations are left alone: they
already take one varlen call. transformers has no hook for this: a custom `AttentionInterface`
function only receives ``cu_seqlens`` when its name contains "flash", which also makes
transformers try to load it as a flash kernel.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import os
import sys
import types
import weakref
from dataclasses import dataclass
from typing import Any

from scenetg.errors import ModelError

ENV_SWITCH = "SCENETG_VISION_WINDOWS"
"""Set to 0 (or false/no/off) to keep transformers' own one-call-per-window loop."""

TRANSFORMERS_VERSION = "5.24"
STOCK_FORWARD_SHA256 = "2afc2f9fa3ebd677d971f5123f68b8aee607848de6287e6af72542ff8fb150b2"
"""sha256 of ``inspect.getsource(<VisionAttention>.forward)`` in transformers 5.24, the same text
for all the classes below (generated from one modular source)."""

VISION_ATTENTION_CLASSES = {
    ("transformers.models.qwen2_vl.modeling_qwen2_vl", "VisionAttention"),
    ("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLVisionAttention"),
    ("transformers.models.qwen3_vl.modeling_qwen3_vl", "Qwen3VLVisionAttention"),
    ("transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe", "Qwen3VLMoeVisionAttention"),
}
BATCHED_IMPLEMENTATIONS = ("sdpa", "eager")
"""Attention functions known to take a batch of windows as they take one."""

MAX_SCORES_PER_CALL = 2**27
"""Cap on n·heads·L² per call: eager (and SDPA's math fallback) materialise the score matrix, so
a group is split into calls of at most this many scores (512 MiB in fp32). A 128-frame
full-attention block of the 7B (64 × 16 heads × 576²) becomes 3 calls; its windows stay 2."""


def window_batching_enabled() -> bool:
    """False when ``SCENETG_VISION_WINDOWS`` is 0/false/no/off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def _is_vision_attention(module: Any) -> bool:
    cls = type(module)
    return (cls.__module__, cls.__name__) in VISION_ATTENTION_CLASSES


def check_vision_attention_source(cls: type) -> None:
    """Raise ModelError unless `cls.forward` is the transformers source the batched forward copies."""
    import transformers

    digest = hashlib.sha256(inspect.getsource(cls.forward).encode()).hexdigest()
    if digest != STOCK_FORWARD_SHA256:
        raise ModelError(
            f"transformers {transformers.__version__}: {cls.__name__}.forward differs from the "
            f"{TRANSFORMERS_VERSION} code that scenetg's vision window batching replaces; set "
            f"{ENV_SWITCH}=0 to run without it, or update scenetg/models/vision_windows.py"
        )


@dataclass(frozen=True)
class WindowPlan:
    """How one ``cu_seqlens`` is attended: token order `perm` (None: already in order) that makes
    the windows of each call contiguous, its inverse, and per call ``(window length, windows)``."""

    perm: Any
    inverse: Any
    calls: tuple[tuple[int, int], ...]


def window_plan(cu_seqlens, heads: int, device) -> WindowPlan:
    """The windows of `cu_seqlens` grouped by length, in order of first appearance; a group of
    more than `MAX_SCORES_PER_CALL` scores (n·heads·L²) becomes several calls; empty windows are
    dropped. Every block of one forward gets the same `cu_seqlens` tensor, so the plan is made
    once per forward (`_PLANS`): one host sync per forward instead of one per block."""
    import torch

    version = -1 if cu_seqlens.is_inference() else cu_seqlens._version  # inference: no counter
    key = (id(cu_seqlens), version, heads, str(device))
    cached = _PLANS.get(key)
    if cached is not None and cached[0]() is cu_seqlens:
        return cached[1]
    bounds = cu_seqlens.tolist()
    starts_by_length: dict[int, list[int]] = {}
    for start, end in itertools.pairwise(bounds):
        if end > start:
            starts_by_length.setdefault(end - start, []).append(start)
    calls, order = [], []
    for length, starts in starts_by_length.items():
        per_call = max(1, MAX_SCORES_PER_CALL // (heads * length * length))
        calls += [(length, len(starts[i : i + per_call])) for i in range(0, len(starts), per_call)]
        order.append((torch.tensor(starts)[:, None] + torch.arange(length)).reshape(-1))
    perm = torch.cat(order)
    if torch.equal(perm, torch.arange(len(perm))):
        plan = WindowPlan(None, None, tuple(calls))
    else:
        perm = perm.to(device, non_blocking=True)
        plan = WindowPlan(perm, torch.argsort(perm), tuple(calls))
    if len(_PLANS) >= 4:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = (weakref.ref(cu_seqlens), plan)
    return plan


_PLANS: dict[tuple, tuple[weakref.ref, WindowPlan]] = {}


def batched_forward(
    self,
    hidden_states,
    cu_seqlens,
    position_embeddings=None,
    max_seqlen: int | None = None,
    **kwargs,
):
    """transformers 5.24's vision attention forward, with the per-window loop replaced by one
    call per group of equal-length windows (`window_plan`). Tokens are put in group order before
    ``qkv`` and back after ``proj`` (both act per token), so each group is a contiguous block that
    a view stacks to ``(n, heads, L, head_dim)``."""
    import torch

    stock = type(self).forward
    if self.config._attn_implementation not in BATCHED_IMPLEMENTATIONS:
        return stock(self, hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
    lib = sys.modules[type(self).__module__]
    plan = window_plan(cu_seqlens, self.num_heads, hidden_states.device)
    cos, sin = position_embeddings
    if plan.perm is not None:
        hidden_states, cos, sin = hidden_states[plan.perm], cos[plan.perm], sin[plan.perm]

    seq_length = hidden_states.shape[0]
    query_states, key_states, value_states = (
        self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    )
    query_states, key_states = lib.apply_rotary_pos_emb_vision(query_states, key_states, cos, sin)
    attention_interface = lib.ALL_ATTENTION_FUNCTIONS.get_interface(
        self.config._attn_implementation, lib.eager_attention_forward
    )

    outputs, offset = [], 0
    for length, n in plan.calls:
        q, k, v = (
            t[offset : offset + n * length].reshape(n, length, self.num_heads, -1).transpose(1, 2)
            for t in (query_states, key_states, value_states)
        )
        outputs.append(
            attention_interface(
                self,
                q,
                k,
                v,
                attention_mask=None,
                scaling=self.scaling,
                dropout=0.0 if not self.training else self.attention_dropout,
                is_causal=False,
                **kwargs,
            )[0].reshape(n * length, -1)
        )
        offset += n * length
    attn_output = outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    attn_output = self.proj(attn_output.contiguous())
    return attn_output if plan.perm is None else attn_output[plan.inverse]


def _is_patched(module: Any) -> bool:
    forward = module.__dict__.get("forward")
    return getattr(forward, "__func__", None) is batched_forward


def install_window_batching(model: Any) -> int:
    """Batch the equal-size vision windows of every Qwen-VL vision attention in `model` whose
    implementation is SDPA or eager; returns how many modules were patched (0 for other models,
    flash implementations, or when ``SCENETG_VISION_WINDOWS=0``). Raises ModelError when
    transformers' forward is not the version this replaces."""
    if not window_batching_enabled():
        return 0
    patched = 0
    checked: set[type] = set()
    for module in model.modules():
        if not _is_vision_attention(module) or _is_patched(module):
            continue
        if module.config._attn_implementation not in BATCHED_IMPLEMENTATIONS:
            continue
        if type(module) not in checked:
            check_vision_attention_source(type(module))
            checked.add(type(module))
        module.forward = types.MethodType(batched_forward, module)
        patched += 1
    return patched


def remove_window_batching(model: Any) -> int:
    """Undo `install_window_batching` (the library's forward again); returns how many modules."""
    removed = 0
    for module in model.modules():
        if _is_patched(module):
            del module.forward
            removed += 1
    return removed
