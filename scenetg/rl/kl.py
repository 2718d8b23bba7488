"""Token-aware KL (DESIGN.md, RL): which completion tokens are timestamps, and their β.

GRPO's per-token KL penalty ``β · kl_t`` becomes ``β_t · kl_t`` with ``β_t = β_ts`` on timestamp
tokens — the tokens whose text overlaps a number or clock time inside ``<answer>`` — and ``β``
elsewhere (defaults β = 0.04, β_ts = 0: the model may move its timestamps away from the reference
while the rest of its language stays anchored). Token spans come from the tokenizer's offsets on
the completion's own text, never from guessing which ids are digits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from scenetg.grounding.parsing import TIME_PATTERN

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.S | re.I)
_NUMBER = re.compile(TIME_PATTERN)  # the parser's own notion of a time


def timestamp_char_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the numbers / clock times inside ``<answer>`` blocks of `text` (an
    unclosed last block counts: a truncated answer's numbers are still timestamps)."""
    spans = []
    for block in _ANSWER_BLOCK.finditer(text):
        base = block.start(1)
        spans.extend((base + m.start(), base + m.end()) for m in _NUMBER.finditer(block.group(1)))
    return spans


def token_char_offsets(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """``(text, offsets)``: the decoded text of `ids` (special tokens kept) and each token's
    character span in it.

    Fast path: re-encode the text with ``return_offsets_mapping``; when that gives back the same
    ids (the usual case) its offsets are the tokens' spans. Otherwise spans come from decoding
    growing prefixes, which is exact for any tokenizer (a token that ends inside a multi-byte
    character gets an empty span until the character completes)."""
    ids = [int(i) for i in ids]
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) == ids:
            return text, [tuple(o) for o in enc["offset_mapping"]]
    offsets, prev = [], 0
    for i in range(len(ids)):
        cur = len(
            tokenizer.decode(ids[: i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        )
        offsets.append((prev, max(prev, cur)))
        prev = max(prev, cur)
    return text, offsets


def timestamp_token_mask(tokenizer: Any, completion_ids: Any) -> torch.BoolTensor:
    """True on the timestamp tokens of each completion; same shape as `completion_ids`.

    `completion_ids` is a (B, T) tensor (right padding is fine: pads carry no digits) or a list of
    id lists (the mask is then padded with False to the longest)."""
    rows = completion_ids.tolist() if isinstance(completion_ids, torch.Tensor) else list(completion_ids)
    width = max((len(r) for r in rows), default=0)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, ids in enumerate(rows):
        text, offsets = token_char_offsets(tokenizer, ids)
        spans = timestamp_char_spans(text)
        if not spans:
            continue
        for t, (s, e) in enumerate(offsets):
            if e > s and any(s < ne and ns < e for ns, ne in spans):
                mask[b, t] = True
    if isinstance(completion_ids, torch.Tensor):
        mask = mask.to(completion_ids.device)
    return mask


def kl_coefficients(timestamp_mask: torch.Tensor, beta: float, beta_timestamp: float) -> torch.Tensor:
    """Per-token β_t: `beta_timestamp` where `timestamp_mask`, else `beta` (float32)."""
    coeff = torch.full(timestamp_mask.shape, float(beta), dtype=torch.float32, device=timestamp_mask.device)
    coeff[timestamp_mask] = float(beta_timestamp)
    return coeff
