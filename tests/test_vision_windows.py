"""Vision window batching: same outputs as transformers' per-window loop, one attention call per
window length, loud failure on a transformers whose vision attention differs, `ground` unchanged."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen25
from transformers.vision_utils import get_vision_attention_seqlens, get_vision_window_index

from scenetg.errors import ModelError
from scenetg.models import vision_windows as vw
from scenetg.models.qwen import load_qwen, video_inputs

# Qwen2.5-VL-7B's vision geometry (patch 14, window 112 px, 2x2 merge, a full-attention block
# after windowed ones) at a small width, so a few 448x252 frames run in well under a second.
REAL_GEOMETRY = dict(
    depth=4, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=32,
    patch_size=14, window_size=112, spatial_merge_size=2, temporal_patch_size=2,
    fullatt_block_indexes=[1, 3],
)
# two videos at 448x252 (4 and 2 frames) and one at 280x168 (2 frames): grid (t, h, w) in patches
GRIDS = [[2, 18, 32], [1, 18, 32], [1, 12, 20]]


def _tower(impl: str):
    cfg = Qwen2_5_VLConfig(vision_config=REAL_GEOMETRY).vision_config
    cfg._attn_implementation = impl
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return qwen25.Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg).eval()


def _pixels(grid: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(int(grid.prod(1).sum()), 3 * 2 * 14 * 14, generator=gen)


@pytest.fixture
def attention_calls(monkeypatch):
    """Counts attention-function calls per vision attention module (SDPA and eager)."""
    calls: collections.Counter = collections.Counter()

    def counting(fn):
        def wrapper(module, *args, **kwargs):
            calls[id(module)] += 1
            return fn(module, *args, **kwargs)
        return wrapper

    mapping = qwen25.ALL_ATTENTION_FUNCTIONS._global_mapping
    monkeypatch.setitem(mapping, "sdpa", counting(mapping["sdpa"]))
    monkeypatch.setattr(qwen25, "eager_attention_forward", counting(qwen25.eager_attention_forward))
    return calls


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_real_window_geometry_matches_stock_with_one_call_per_length(impl, attention_calls):
    tower, grid = _tower(impl), torch.tensor(GRIDS)
    pixels = _pixels(grid)
    _, cu_windows = get_vision_window_index(grid, 2, 112, 14)
    cu_frames, _ = get_vision_attention_seqlens(grid, tower.config)
    windows = cu_windows.diff()
    frames = cu_frames.diff()
    assert len(set(windows.tolist())) >= 3  # full windows and ragged edge windows of two sizes

    with torch.no_grad():
        stock = tower(pixels, grid_thw=grid).pooler_output
        stock_calls = [attention_calls[id(b.attn)] for b in tower.blocks]
        attention_calls.clear()
        assert vw.install_window_batching(tower) == len(tower.blocks)
        batched = tower(pixels, grid_thw=grid).pooler_output
    batched_calls = [attention_calls[id(b.attn)] for b in tower.blocks]

    torch.testing.assert_close(batched, stock, rtol=1e-5, atol=1e-6)
    full = set(REAL_GEOMETRY["fullatt_block_indexes"])
    per_block = [frames if i in full else windows for i in range(len(tower.blocks))]
    assert stock_calls == [len(s) for s in per_block]
    assert batched_calls == [len(set(s.tolist())) for s in per_block]


def test_large_groups_are_split_and_still_match(monkeypatch, attention_calls):
    """Under the score cap (eager materialises n·heads·L² scores) a group becomes several calls."""
    tower, grid = _tower("eager"), torch.tensor(GRIDS[:1])
    pixels = _pixels(grid)
    with torch.no_grad():
        stock = tower(pixels, grid_thw=grid).pooler_output
        monkeypatch.setattr(vw, "MAX_SCORES_PER_CALL", 4 * 64 * 64 * 3)  # three 64-token windows
        vw.install_window_batching(tower)
        attention_calls.clear()
        batched = tower(pixels, grid_thw=grid).pooler_output
    torch.testing.assert_close(batched, stock, rtol=1e-5, atol=1e-6)
    # two frame pairs of 8 windows of 64 tokens (16: six calls of <= 3) and 4 of 16 (one call);
    # a full-attention block's two 576-token sequences exceed the cap alone: one call each
    assert attention_calls[id(tower.blocks[0].attn)] == 6 + 1
    assert attention_calls[id(tower.blocks[1].attn)] == 2


def test_flash_is_left_alone_and_removal_restores():
    tower = _tower("sdpa")
    tower.config._attn_implementation = "flash_attention_2"
    assert vw.install_window_batching(tower) == 0
    assert all("forward" not in b.attn.__dict__ for b in tower.blocks)
    tower.config._attn_implementation = "sdpa"
    assert vw.install_window_batching(tower) == 4
    assert vw.install_window_batching(tower) == 0  # already installed
    assert vw.remove_window_batching(tower) == 4
    assert all("forward" not in b.attn.__dict__ for b in tower.blocks)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(vw.ENV_SWITCH, "0")
    tower = _tower("sdpa")
    assert vw.install_window_batching(tower) == 0
    assert all("forward" not in b.attn.__dict__ for b in tower.blocks)


def test_changed_transformers_source_fails_loudly(monkeypatch, tiny_models):
    stock = qwen25.Qwen2_5_VLVisionAttention.forward

    def forward(self, hidden_states, cu_seqlens, position_embeddings=None, max_seqlen=None, **kw):
        return stock(self, hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kw)

    monkeypatch.setattr(qwen25.Qwen2_5_VLVisionAttention, "forward", forward)
    with pytest.raises(ModelError, match=f"{vw.ENV_SWITCH}=0"):
        vw.install_window_batching(_tower("sdpa"))
    # a model still loads, the stock way, with a warning saying why
    with pytest.warns(RuntimeWarning, match="Qwen2_5_VLVisionAttention.forward differs.*own code instead"):
        model, _ = load_qwen(tiny_models["qwen"], device="cpu")
    assert not any(vw._is_patched(m) for m in model.modules())


def test_tiny_model_logits_match_stock(tiny_models):
    frames = list(np.random.default_rng(0).integers(0, 255, (4, 150, 250, 3), dtype=np.uint8))
    outs = []
    for batch in (False, True):
        model, processor = load_qwen(tiny_models["qwen"], device="cpu", batch_vision_windows=batch)
        patched = sum("forward" in b.attn.__dict__ for b in model.model.visual.blocks)
        assert patched == (len(model.model.visual.blocks) if batch else 0)
        inputs = video_inputs(processor, frames, [0.0, 0.5, 1.0, 1.5], "Describe.", duration_s=2.0)
        grid = inputs["video_grid_thw"]
        _, cu_windows = get_vision_window_index(grid, 2, model.config.vision_config.window_size, 14)
        assert len(set(cu_windows.diff().tolist())) > 1  # windows of several sizes
        with torch.no_grad():
            outs.append(model(**inputs).logits)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_ground_output_unchanged(tmp_path, tiny_models, monkeypatch):
    from scenetg.cli import main
    from scenetg.video.synthetic import write_synthetic_video

    videos = tmp_path / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "a.mp4", [1.5, 1.5], fps=8, size=(160, 96))
    write_synthetic_video(videos / "b.mp4", [2.0, 1.0], fps=8, size=(160, 96), seed=1)
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(
        json.dumps({"qid": q, "vid": v, "duration": 3.0, "query": text, "relevant_windows": [[0, 1]]})
        + "\n" for q, v, text in [("q1", "a", "a dark scene"), ("q2", "b", "the box moves")]
    ))
    installed = []
    real = vw.install_window_batching
    # load_qwen calls it through scenetg.models.qwen's name for it
    monkeypatch.setattr("scenetg.models.qwen.install_window_batching",
                        lambda m: installed.append(real(m)) or installed[-1])
    raws = {}
    for switch in ("0", "1"):
        monkeypatch.setenv(vw.ENV_SWITCH, switch)
        out = tmp_path / f"p{switch}.jsonl"
        code = main(["ground", "-a", str(ann), "--videos", str(videos), "--out", str(out),
                     "--model", str(tiny_models["qwen"]), "--device", "cpu", "--max-frames", "4",
                     "--max-new-tokens", "16"])
        assert code == 0
        raws[switch] = {r["qid"]: r["raw"] for r in map(json.loads, out.read_text().splitlines())}
    assert installed[0] == 0 and installed[1] > 0
    assert raws["1"] == raws["0"] and len(raws["0"]) == 2


@pytest.mark.slow
def test_gradients_and_deepcopy_match_stock():
    """Training through the tower (full fine-tuning, TRL's deep-copied reference model) sees the
    same gradients as with transformers' loop."""
    import copy

    grid = torch.tensor(GRIDS[:2])
    pixels = _pixels(grid)
    grads = []
    for batched in (False, True):
        tower = _tower("sdpa")
        if batched:
            vw.install_window_batching(tower)
            tower = copy.deepcopy(tower)
            assert all(b.attn.forward.__self__ is b.attn for b in tower.blocks)
        tower(pixels, grid_thw=grid).pooler_output.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in tower.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_other_qwen_vision_towers_match_stock(family):
    """Qwen2-VL and Qwen3-VL share the vision attention (per-frame calls in every block)."""
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig as Config
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel as Tower

        dims, patch = dict(hidden_size=32, out_hidden_size=32, patch_size=16,
                           deepstack_visual_indexes=[0], num_position_embeddings=64), 16
    else:
        from transformers import Qwen2VLConfig as Config
        from transformers.models.qwen2_vl.modeling_qwen2_vl import (
            Qwen2VisionTransformerPretrainedModel as Tower,
        )

        dims, patch = dict(embed_dim=32, hidden_size=32, mlp_ratio=2), 14
    cfg = Config(vision_config=dict(depth=2, num_heads=2, intermediate_size=64, **dims)).vision_config
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    tower = Tower._from_config(cfg).eval()
    grid = torch.tensor([[2, 8, 12], [1, 6, 6]])  # two frame sizes: two lengths per block
    pixels = torch.randn(int(grid.prod(1).sum()), 3 * 2 * patch * patch)
    with torch.no_grad():
        stock = tower(pixels, grid_thw=grid).pooler_output
        assert vw.install_window_batching(tower) == 2
        batched = tower(pixels, grid_thw=grid).pooler_output
    torch.testing.assert_close(batched, stock, rtol=1e-5, atol=1e-6)
