"""Qwen2.5-VL's reference M-RoPE positions (`scenetg.models.rope_positions`): the positions a
`load_qwen` model feeds its language model are Qwen's / vLLM's (text after a video starts at the
video's largest position + 1), in forward and in generation, with left padding and videos of
different fps; the first generated token follows the prompt; stock transformers is the bug."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from scenetg.errors import ModelError, ScenetgError
from scenetg.models import rope_positions
from scenetg.models.engine_parity import qwen_reference_positions
from scenetg.models.qwen import batch_video_inputs, load_qwen
from scenetg.models.rope_positions import (
    check_rope_index_source,
    has_reference_positions,
    install_reference_positions,
    remove_reference_positions,
)


def _clip(seed: int, k: int, side: int = 112) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(k)]


@pytest.fixture(scope="module")
def qwen(tiny_models):
    return load_qwen(tiny_models["qwen"], dtype="float32", device="cpu")


class LanguagePositions:
    """The ``position_ids`` each call of the language model receives (last 3 rows: t, h, w)."""

    def __init__(self, model):
        self.calls: list[torch.Tensor] = []
        self.handle = model.model.language_model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls.append(kwargs["position_ids"][-3:].clone())

    def close(self):
        self.handle.remove()


def _batch(processor, k_frames, durations, prompts):
    videos = [_clip(i, k) for i, k in enumerate(k_frames)]
    times = [[i * d / k for i in range(k)] for k, d in zip(k_frames, durations, strict=True)]
    return batch_video_inputs(processor, videos, times, prompts, durations_s=list(durations))


def _expected(model, inputs, row):
    """`qwen_reference_positions` of one row, its left padding dropped."""
    keep = inputs["attention_mask"][row].bool()
    cfg = model.config
    return qwen_reference_positions(
        inputs["input_ids"][row][keep].tolist(), inputs["video_grid_thw"][row].tolist(),
        float(inputs["second_per_grid_ts"][row]), cfg.video_token_id,
        cfg.vision_config.spatial_merge_size, cfg.vision_config.tokens_per_second,
    ), keep


def _forward_positions(model, inputs) -> torch.Tensor:
    spy = LanguagePositions(model)
    try:
        with torch.inference_mode():
            model(**inputs)
    finally:
        spy.close()
    (positions,) = spy.calls
    return positions


def test_one_video_of_several_temporal_grids(qwen):
    model, processor = qwen
    assert has_reference_positions(model)
    # 8 frames over 3 s: fps 8/3, second_per_grid_t 0.75, 1.5 positions per grid (tiny model:
    # tokens_per_second 2): temporal 0, 1, 3, 4 (floor), an h x w = 4 x 4 grid
    inputs = _batch(processor, [8], [3.0], ["where is the red scene? answer in seconds"])
    assert inputs["video_grid_thw"].tolist() == [[4, 8, 8]]
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(0.75)
    pos = _forward_positions(model, inputs)[:, 0].numpy()
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(model.config.video_token_id)
    # hand-computed: the video's positions are start + {0,1,3,4} (t) and start + 0..3 (h, w); its
    # largest is start + 4, so the first text token after it sits at start + 5
    assert sorted(set(pos[0, start : start + 64].tolist())) == [start, start + 1, start + 3, start + 4]
    assert pos[:, start + 64].tolist() == [start + 5] * 3
    assert pos[:, :start].tolist() == [list(range(start))] * 3
    np.testing.assert_array_equal(pos, _expected(model, inputs, 0)[0])


def test_left_padded_batch_with_two_fps(qwen):
    model, processor = qwen
    # a short and a long prompt (left padding), 4 frames over 8 s (fps 0.5: 8 positions per
    # grid) and 8 frames over 2 s (fps 4: 1 position per grid)
    inputs = _batch(processor, [4, 8], [8.0, 2.0], ["red?", "where does the long blue scene begin and end"])
    assert not bool(inputs["attention_mask"][0].all())
    pos = _forward_positions(model, inputs)
    for row in range(2):
        expected, keep = _expected(model, inputs, row)
        np.testing.assert_array_equal(pos[:, row, keep].numpy(), expected)
    # the first row's video: temporal 0 and 8 from its start, text after at +9 (stock: +4)
    ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
    start = ids.index(model.config.video_token_id)
    first_text = pos[:, 0, inputs["attention_mask"][0].bool()][:, start + 2 * 16]
    assert first_text.tolist() == [start + 9] * 3


def test_generation_continues_after_the_prompt(qwen):
    """Prefill positions are the reference ones, and the generated tokens are fed back at the
    prompt's largest position + 1, + 2 (``mrope_position_deltas`` agrees with the positions)."""
    model, processor = qwen
    inputs = _batch(processor, [8, 4], [3.0, 8.0], ["red?", "where is the green scene"])
    spy = LanguagePositions(model)
    try:
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
    finally:
        spy.close()
    prefill, *steps = spy.calls
    assert len(steps) == 2
    for row in range(2):
        expected, keep = _expected(model, inputs, row)
        np.testing.assert_array_equal(prefill[:, row, keep].numpy(), expected)
        for i, step in enumerate(steps):
            assert step[:, row, -1].tolist() == [int(expected.max()) + 1 + i] * 3


def test_cached_step_uses_the_deltas(qwen):
    """A step on the cache without ``position_ids`` (transformers' ``compute_3d_position_ids``)
    places the new token by ``mrope_position_deltas``: at the prompt's largest position + 1."""
    model, processor = qwen
    inputs = _batch(processor, [8], [3.0], ["where is the green scene"])
    with torch.inference_mode():
        out = model(**inputs, use_cache=True)
        spy = LanguagePositions(model)
        cache = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        try:  # no attention mask: 5.25 builds a full-length position row from one
            model(input_ids=out.logits[:, -1].argmax(-1, keepdim=True), **{cache: out.past_key_values})
        finally:
            spy.close()
    (step,) = spy.calls
    expected, _ = _expected(model, inputs, 0)
    assert step[:, 0, -1].tolist() == [int(expected.max()) + 1] * 3


def test_stock_positions_differ_and_both_generate(tiny_models):
    """Without the fix (transformers' own code) the text after the video starts inside the
    video's temporal positions; removing and reinstalling works, and both generate."""
    model, processor = load_qwen(tiny_models["qwen"], dtype="float32", device="cpu")
    inputs = _batch(processor, [8], [3.0], ["red?"])
    expected, _ = _expected(model, inputs, 0)
    assert remove_reference_positions(model) == 1 and not has_reference_positions(model)
    stock = _forward_positions(model, inputs)[:, 0].numpy()
    start = inputs["input_ids"][0].tolist().index(model.config.video_token_id)
    assert stock[:, start + 64].tolist() == [start + 4] * 3  # start + max(h, w): the bug
    assert not np.array_equal(stock, expected)
    with torch.inference_mode():
        stock_out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert install_reference_positions(model) == 1 and install_reference_positions(model) == 1
    np.testing.assert_array_equal(_forward_positions(model, inputs)[:, 0].numpy(), expected)
    with torch.inference_mode():
        fixed_out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert stock_out.shape == fixed_out.shape == (1, inputs["input_ids"].shape[1] + 2)


def test_env_switch_and_source_guard(tiny_models, monkeypatch):
    monkeypatch.setenv("SCENETG_ROPE_POSITIONS", "0")
    model, _ = load_qwen(tiny_models["qwen"], dtype="float32", device="cpu")
    assert not has_reference_positions(model)
    monkeypatch.delenv("SCENETG_ROPE_POSITIONS")
    check_rope_index_source()  # the installed transformers is the code replaced
    changed = dict(rope_positions.ROPE_INDEX_SOURCE)
    changed["Qwen2_5_VLModel.get_rope_index"] = ("current_pos = llm_pos_ids_list[-1].max() + 1",)
    monkeypatch.setattr(rope_positions, "ROPE_INDEX_SOURCE", changed)
    with pytest.raises(ModelError, match="SCENETG_ROPE_POSITIONS=0"):
        install_reference_positions(model)
    with pytest.warns(RuntimeWarning, match="transformers' own M-RoPE positions"):
        assert rope_positions.reference_positions_or_stock(model) == 0
    assert not has_reference_positions(model)


def test_a_checkpoint_keeps_the_positions_it_was_trained_with(tiny_models, tmp_path):
    """config.json's `scenetg_mrope_positions: transformers` (the shipped toy SFT checkpoint, trained
    before the fix) keeps transformers' own positions, through load, save and reload; an unmarked
    checkpoint (Qwen's own) gets the reference ones; a bad value is a one-line error."""
    import json
    import shutil

    from scenetg.demo_toy import TOY_SFT

    assert json.loads((TOY_SFT / "config.json").read_text())[rope_positions.CONFIG_KEY] == "transformers"
    marked = tmp_path / "marked"
    shutil.copytree(tiny_models["qwen"], marked)
    cfg = json.loads((marked / "config.json").read_text())
    (marked / "config.json").write_text(json.dumps({**cfg, rope_positions.CONFIG_KEY: "transformers"}))
    model, processor = load_qwen(marked, dtype="float32", device="cpu")
    assert not has_reference_positions(model)
    model.save_pretrained(tmp_path / "again")  # a model trained on from it keeps the marker
    processor.save_pretrained(tmp_path / "again")
    again, _ = load_qwen(tmp_path / "again", dtype="float32", device="cpu")
    assert not has_reference_positions(again)
    plain, _ = load_qwen(tiny_models["qwen"], dtype="float32", device="cpu")
    assert has_reference_positions(plain)
    (marked / "config.json").write_text(json.dumps({**cfg, rope_positions.CONFIG_KEY: "bogus"}))
    with pytest.raises(ScenetgError, match="scenetg_mrope_positions: expected qwen or transformers"):
        load_qwen(marked, dtype="float32", device="cpu")


def test_vllm_refuses_a_checkpoint_trained_with_stock_positions(tmp_path):
    """vLLM numbers positions as Qwen does; a checkpoint marked `transformers` is refused in one
    line before any engine starts; an unmarked one, or a Hub id, passes."""
    from scenetg.demo_toy import TOY_SFT
    from scenetg.models.rope_positions import refuse_stock_positions_on_vllm

    with pytest.raises(ScenetgError, match=r"^--model with the vLLM backend: .* trained with transformers' own"):
        refuse_stock_positions_on_vllm(TOY_SFT, "--model with the vLLM backend")
    (tmp_path / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    refuse_stock_positions_on_vllm(tmp_path, "x")
    refuse_stock_positions_on_vllm("Qwen/Qwen2.5-VL-7B-Instruct", "x")
