"""One vision encoding per distinct video: same outputs and gradients as stock Qwen2.5-VL, fewer
encoded rows, and a loud failure on a transformers whose code differs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from scenetg.models.qwen import batch_video_inputs, load_qwen
from scenetg.models.shared_video_encoding import (
    distinct_videos,
    share_video_encoding,
    shares_video_encoding,
)


def _clip(seed: int, k: int = 4, side: int = 112) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(k)]


@pytest.fixture(scope="module")
def qwen(tiny_models):
    return load_qwen(tiny_models["qwen"], dtype="float32", device="cpu")


class EncodedVideos:
    """Counts the videos (grid rows) the vision tower of `model` is given, per call."""

    def __init__(self, model):
        self.calls: list[int] = []
        self.handle = model.model.visual.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.calls.append(int(kwargs["grid_thw"].shape[0]))

    def take(self) -> list[int]:
        calls, self.calls = self.calls, []
        return calls


def _inputs(processor, videos):
    n = len(videos)
    return batch_video_inputs(
        processor, videos, [[0.0, 1.0, 2.0, 3.0]] * n, [f"query {i}" for i in range(n)],
        durations_s=[4.0] * n,
    )


def _forward_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    logits = model(**inputs).logits
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    (logits * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def test_distinct_videos_matches_grid_and_every_pixel():
    a = torch.randn(16, 8)
    a_changed = a.clone()
    a_changed[15, 7] += 1.0  # differs in one value the probe may miss
    b = torch.randn(32, 8)
    nan = torch.full((16, 8), float("nan"))
    pixels = torch.cat([a, a_changed, a, b, b, nan, nan])
    grid = torch.tensor([[1, 4, 4], [1, 4, 4], [1, 4, 4], [2, 4, 4], [2, 4, 4], [1, 4, 4], [1, 4, 4]])
    assert distinct_videos(pixels, grid) == [0, 1, 0, 3, 3, 5, 6]  # NaN never equals itself
    same_pixels_other_grid = torch.tensor([[1, 4, 4], [1, 2, 8]])
    assert distinct_videos(torch.cat([a, a]), same_pixels_other_grid) == [0, 1]


def test_distinct_videos_at_real_size():
    """A 64-frame 448 px video has 38.5M pixel values: probe positions past float32's exact
    integers must still fall inside the video."""
    pixels = torch.zeros(2 * 32 * 32 * 32, 1176, dtype=torch.uint8)
    assert distinct_videos(pixels, torch.tensor([[32, 32, 32], [32, 32, 32]])) == [0, 0]


def test_forward_and_gradients_equal_stock_with_fewer_encoded_videos(qwen):
    """Rows A, A, B, A (a trainable vision tower): logits and every gradient as stock, with
    2 videos encoded instead of 4."""
    model, processor = qwen
    inputs = _inputs(processor, [_clip(0), _clip(0), _clip(1), _clip(0)])
    assert inputs["video_grid_thw"].tolist() == [[2, 8, 8]] * 4  # several windows per frame
    encoded = EncodedVideos(model)
    try:
        share_video_encoding(model, enabled=False)
        stock_logits, stock_grads = _forward_and_grads(model, inputs)
        assert encoded.take() == [4]
        share_video_encoding(model)
        logits, grads = _forward_and_grads(model, inputs)
        assert encoded.take() == [2]
    finally:
        encoded.handle.remove()
        share_video_encoding(model)
    torch.testing.assert_close(logits, stock_logits, rtol=1e-5, atol=1e-5)
    visual = [n for n in stock_grads if ".visual." in n]
    assert visual and all(stock_grads[n].abs().sum() > 0 for n in visual)
    assert grads.keys() == stock_grads.keys()
    for name, grad in stock_grads.items():  # G copies of one encoding sum as G encodings do
        # float32 sums in another order: within 1e-5 of the tensor's largest entry (seen: 2e-6)
        assert (grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-8, name


def test_generation_gives_the_same_text_and_encodes_each_video_once(qwen):
    from scenetg.models.runner import QwenRunner

    model, processor = qwen
    runner = QwenRunner(model, processor, max_new_tokens=8)
    clips = [_clip(0), _clip(1), _clip(0), _clip(0)]
    times, durations = [[0.0, 1.0, 2.0, 3.0]] * 4, [4.0] * 4
    prompts = [f"when does thing {i} happen?" for i in range(4)]
    encoded = EncodedVideos(model)
    try:
        share_video_encoding(model, enabled=False)
        stock = runner.generate(clips, times, prompts, durations)
        assert encoded.take() == [4]
        share_video_encoding(model)
        shared = runner.generate(clips, times, prompts, durations)
        assert encoded.take() == [2]
    finally:
        encoded.handle.remove()
    assert shared == stock


@pytest.mark.slow
def test_ground_predictions_unchanged(grounding_set, tiny_models, tmp_path):
    """`scenetg ground` on queries that share videos writes the same predictions either way."""
    import json

    from scenetg.eval.grounding import ground
    from scenetg.grounding.records import GroundingRecord
    from scenetg.models.runner import QwenRunner
    from tests.train_fixtures import QUERIES

    records = [GroundingRecord(q, v, d, text, [tuple(w)]) for q, v, d, text, w in QUERIES]
    rows = {}
    for share in (False, True):
        runner = QwenRunner.load(
            tiny_models["qwen"], device="cpu", max_new_tokens=12, share_video_encoding=share
        )
        assert shares_video_encoding(runner.model) is share
        encoded = EncodedVideos(runner.model)
        out = tmp_path / f"pred_{share}.jsonl"
        ground(records, grounding_set / "videos", out, model=runner, fps=2, max_frames=4, batch_size=4)
        rows[share] = {r["qid"]: (r["raw"], r["pred"]) for r in map(json.loads, out.read_text().splitlines())}
        assert encoded.take() == ([2] if share else [4])  # 4 queries on 2 videos, one batch
    assert rows[True] == rows[False] and len(rows[True]) == 4


def test_stock_path_when_per_layer_outputs_are_asked(qwen):
    model, processor = qwen
    inputs = _inputs(processor, [_clip(0), _clip(0)])
    encoded = EncodedVideos(model)
    try:
        with torch.no_grad():
            out = model.model.get_video_features(
                inputs["pixel_values_videos"], inputs["video_grid_thw"], output_hidden_states=True
            )
            shared = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    finally:
        encoded.handle.remove()
    assert encoded.calls == [2, 1]
    assert len(out.hidden_states) > 0 and len(shared.pooler_output) == 2
    torch.testing.assert_close(shared.pooler_output[0], shared.pooler_output[1])
    torch.testing.assert_close(shared.last_hidden_state, out.last_hidden_state, rtol=1e-5, atol=1e-5)


def test_install_is_idempotent_survives_deepcopy_and_can_be_removed(qwen):
    model, _ = qwen
    assert shares_video_encoding(model)  # load_qwen's default
    assert share_video_encoding(model) == 1 and shares_video_encoding(model)
    twin = copy.deepcopy(model)  # a reference copy must encode with its own weights
    assert twin.model.get_video_features.__self__ is twin.model
    share_video_encoding(twin, enabled=False)
    assert not shares_video_encoding(twin) and shares_video_encoding(model)
    assert "get_video_features" not in twin.model.__dict__  # the class's own method again


def test_other_transformers_code_fails_loudly(qwen, tiny_models, monkeypatch):
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m

    from scenetg.models.shared_video_encoding import check_transformers_internals

    check_transformers_internals()
    model, _ = qwen

    def forward(self, input_ids=None, pixel_values_videos=None, video_grid_thw=None, **kwargs):
        return self.visual(pixel_values_videos, grid_thw=video_grid_thw)  # a differing forward

    monkeypatch.setattr(m.Qwen2_5_VLModel, "forward", forward)
    with pytest.raises(RuntimeError, match="Qwen2_5_VLModel.forward"):
        share_video_encoding(model)
    # a model still loads, the stock way, with a warning saying why
    with pytest.warns(RuntimeWarning, match="Qwen2_5_VLModel.forward.*own code instead"):
        stock, _ = load_qwen(tiny_models["qwen"], device="cpu")
    assert not shares_video_encoding(stock)
    plain, _ = load_qwen(tiny_models["qwen"], device="cpu", share_video_encoding=False)
    assert not shares_video_encoding(plain)


@pytest.mark.slow
def test_grpo_step_encodes_each_video_once_per_pass(grounding_set, tiny_models, tmp_path):
    """One GRPO step (2 prompts x G = 2 rollouts; old, reference and policy passes): each pass
    encodes each distinct video once with sharing, every row without; the loss and the gradients
    of a trainable vision tower are the same either way."""
    from scenetg.models.shared_video_encoding import share_video_encoding as set_sharing
    from scenetg.rl.train import build_trainer
    from tests.train_fixtures import make_cfg

    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run", num_iterations=2)
    cfg.freeze_vision = False
    trainer, _, _ = build_trainer(cfg)
    policy, ref = EncodedVideos(trainer.model), EncodedVideos(trainer.ref_model)
    batches = []
    real = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda rows: batches.append(rows) or real(rows)
    trainer.train()
    (rows,) = batches
    distinct = len({r["video_path"] for r in rows})
    assert len(rows) == 4 and distinct <= 2  # G = 2 rows per prompt -> at most 2 videos
    # policy: generation, old log-probs (num_iterations = 2), loss; reference: one pass
    assert policy.take() == [distinct] * 3 and ref.take() == [distinct]
    for model in (trainer.model, trainer.ref_model):
        set_sharing(model, enabled=False)
    real(rows)  # the stock path: every row encoded in generation, old and reference passes
    assert policy.take() == [4, 4] and ref.take() == [4]

    # that step's loss and gradients with and without sharing (trainable vision tower)
    inputs = dict(trainer._buffered_inputs[0])
    g = torch.Generator().manual_seed(0)  # a batch with something to learn: advantages, KL
    inputs["advantages"] = torch.randn(4, generator=g)
    inputs["ref_per_token_logps"] = -3.0 + 0.5 * torch.randn(inputs["completion_ids"].shape, generator=g)
    results = {}
    for share in (False, True):
        set_sharing(trainer.model, enabled=share)
        trainer.model.zero_grad(set_to_none=True)
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if ".visual." in n}
        results[share] = (loss.item(), grads)
    assert policy.take() == [4, distinct]
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5, abs=1e-7)
    for name, grad in results[False][1].items():
        assert grad.abs().max() > 0, name
        assert (results[True][1][name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-8, name


@pytest.mark.slow
def test_train_config_key_turns_sharing_off(grounding_set, tiny_models, tmp_path, monkeypatch):
    """On a transformers whose code differs, `scenetg train` warns and trains on the stock
    encoding (a speed-up never stops a run); ``share_video_encoding: false`` turns it off."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m

    from scenetg.rl.train import build_trainer
    from tests.train_fixtures import make_cfg

    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run")
    assert cfg.share_video_encoding  # the default
    trainer, processor, _ = build_trainer(cfg)
    assert shares_video_encoding(trainer.model)
    cfg.share_video_encoding = False
    trainer, processor, _ = build_trainer(cfg)
    assert not shares_video_encoding(trainer.model) and not shares_video_encoding(trainer.ref_model)

    def forward(self, input_ids=None, pixel_values_videos=None, video_grid_thw=None, **kwargs):
        return self.visual(pixel_values_videos, grid_thw=video_grid_thw)  # a differing forward

    monkeypatch.setattr(m.Qwen2_5_VLModel, "forward", forward)
    cfg.share_video_encoding = True  # a model handed in (not loaded by load_qwen): the trainer checks
    with pytest.warns(RuntimeWarning, match="Qwen2_5_VLModel.forward.*own code instead"):
        trainer, _, _ = build_trainer(cfg, model=trainer.model, processor=processor)
    assert not shares_video_encoding(trainer.model)
