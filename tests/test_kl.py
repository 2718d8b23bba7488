"""Token-aware KL: the timestamp-token mask, from the tokenizer's offsets on the completion text."""

from __future__ import annotations

import pytest
import torch

from scenetg.rl.kl import kl_coefficients, timestamp_char_spans, timestamp_token_mask


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_models):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_models["qwen"]).tokenizer


@pytest.fixture(scope="module")
def merged_digit_tokenizer():
    """A byte-level BPE whose vocabulary merges digits into multi-digit tokens ("125", "17.8")."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    corpus = [f"<answer>{a}.{b} - {a + 5}.{b}</answer> at {a}{b} s" for a in range(0, 200) for b in range(10)]
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>")


def _marked(tokenizer, text: str) -> tuple[list[str], list[bool]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    mask = timestamp_token_mask(tokenizer, torch.tensor([ids]))[0].tolist()
    pieces = [tokenizer.decode([i]) for i in ids]
    return pieces, mask


TEXT = "<think>frame 12 shows 3 people at 0:45</think><answer>12.5 - 17.8</answer>"


def test_timestamp_char_spans_only_inside_answer():
    spans = timestamp_char_spans(TEXT)
    assert [TEXT[s:e] for s, e in spans] == ["12.5", "17.8"]
    clock = "<answer>01:05 - 1:10:30"  # an unclosed (truncated) answer still counts
    assert [clock[s:e] for s, e in timestamp_char_spans(clock)] == ["01:05", "1:10:30"]
    assert timestamp_char_spans("<think>1 - 2</think> 3 - 4") == []


@pytest.mark.parametrize("which", ["tiny", "merged"])
def test_mask_is_exactly_the_answer_numbers(which, tiny_tokenizer, merged_digit_tokenizer):
    tokenizer = tiny_tokenizer if which == "tiny" else merged_digit_tokenizer
    pieces, mask = _marked(tokenizer, TEXT)
    marked = "".join(p for p, m in zip(pieces, mask, strict=True) if m)
    # every character of the two numbers is covered, nothing from <think> or the tags
    assert marked.replace(" ", "") in ("12.517.8", "12.5-17.8")
    think_end = len(tokenizer("<think>frame 12 shows 3 people at 0:45</think>", add_special_tokens=False)["input_ids"])
    assert not any(mask[:think_end])
    for piece, m in zip(pieces, mask, strict=True):
        if m:
            assert any(ch.isdigit() for ch in piece) or piece.strip() in ("-", ".", "")
    if which == "merged":  # the point of this tokenizer: some number token spans several digits
        assert any(m and sum(ch.isdigit() for ch in p) >= 2 for p, m in zip(pieces, mask, strict=True))


def test_mask_on_padded_batch_and_lists(tiny_tokenizer):
    a = tiny_tokenizer("<answer>3 - 7</answer>", add_special_tokens=False)["input_ids"]
    b = tiny_tokenizer("<think>9</think>no answer", add_special_tokens=False)["input_ids"]
    pad = tiny_tokenizer.pad_token_id
    width = max(len(a), len(b))
    batch = torch.tensor([a + [pad] * (width - len(a)), b + [pad] * (width - len(b))])
    mask = timestamp_token_mask(tiny_tokenizer, batch)
    assert mask.shape == batch.shape and mask.dtype == torch.bool
    assert mask[0].sum() >= 2 and not mask[1].any()
    assert torch.equal(timestamp_token_mask(tiny_tokenizer, [a, b]), mask)


def test_kl_coefficients():
    mask = torch.tensor([[True, False], [False, True]])
    assert torch.allclose(kl_coefficients(mask, 0.04, 0.0), torch.tensor([[0.0, 0.04], [0.04, 0.0]]))
    assert torch.equal(kl_coefficients(mask, 0.04, 0.04), torch.full((2, 2), 0.04))
