"""VideoGRPOTrainer, checked where mutations used to pass: each row's own video in every pass of
mixed, shuffled micro-batches; the loss and its gradients equal TRL's with clipping active; the
trainer's own timestamp mask on real rollouts; window batching on policy and reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train_fixtures import QUERIES, make_cfg

pytestmark = pytest.mark.slow

TOY_SFT = Path(__file__).parents[1] / "scenetg" / "demo_assets" / "toy_sft"


def _trainer(cfg, model=None, processor=None):
    from scenetg.rl.train import build_trainer

    trainer, _, _ = build_trainer(cfg, model=model, processor=processor)
    trainer.model.train()
    return trainer


def _expected_videos(trainer) -> dict[str, tuple[float, float]]:
    """query -> (pixel sum, second_per_grid_ts) of its own video, processed on its own."""
    from scenetg.grounding.samples import sample_video
    from scenetg.models.qwen import processor_video_inputs, render_chat

    out = {}
    for row in trainer.train_dataset:
        video = sample_video(row["video_path"], row["duration_s"], trainer.sampling, None)
        inputs = processor_video_inputs(
            trainer.processing_class, [render_chat(trainer.processing_class, row["prompt"])],
            [video.frames], [video.times_s], durations_s=[video.duration_s])
        out[row["query"]] = (float(inputs["pixel_values_videos"].double().sum()),
                             float(inputs["second_per_grid_ts"].reshape(-1)[0]))
    return out


def test_every_row_gets_its_own_video_in_every_pass_of_shuffled_mixed_micro_batches(
        grounding_set, tiny_models, tmp_path):
    """8 rollouts (4 prompts, both videos) per generation, shuffled by TRL and split into two
    micro-batches (`steps_per_generation` 2): each row's pixels and seconds-per-grid must be its
    own prompt's video, in generation, the reference pass and both loss passes."""
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run", max_steps=2, steps_per_generation=2,
                   per_device_train_batch_size=4)
    trainer = _trainer(cfg)
    expected = _expected_videos(trainer)
    assert len({v[0] for v in expected.values()}) == len({v[1] for v in expected.values()}) == 2  # a, b
    tokenizer = trainer.processing_class.tokenizer
    calls: list[tuple[str, list[tuple[str, float, float]]]] = []

    def spy(name):
        def hook(module, args, kwargs):
            pixels = kwargs.get("pixel_values_videos")
            if pixels is None:
                return
            grid, spg = kwargs["video_grid_thw"], kwargs["second_per_grid_ts"].reshape(-1)
            parts = torch.split(pixels, grid.prod(-1).tolist(), dim=0)
            rows = []
            for i, ids in enumerate(kwargs["input_ids"]):
                text = tokenizer.decode(ids)
                query = next(q for _, _, _, q, _ in QUERIES if f'"{q}"' in text)
                rows.append((query, float(parts[i].double().sum()), float(spg[i])))
            calls.append((name + (" loss" if torch.is_grad_enabled() else ""), rows))
        return hook

    trainer.model.register_forward_pre_hook(spy("policy"), with_kwargs=True)
    trainer.ref_model.register_forward_pre_hook(spy("ref"), with_kwargs=True)
    trainer.train()

    names = [n for n, _ in calls]
    assert names.count("ref") >= 1 and names.count("policy") >= 1 and names.count("policy loss") == 2
    mixed = set()
    for name, rows in calls:
        if len({expected[q][1] for q, _, _ in rows}) > 1:
            mixed.add(name)
        for query, pixel_sum, spg in rows:
            own_pixels, own_spg = expected[query]
            assert spg == pytest.approx(own_spg, abs=1e-6), (name, query)
            assert pixel_sum == pytest.approx(own_pixels, rel=1e-6), (name, query)
    assert "policy loss" in mixed  # rows of both videos side by side after TRL's shuffle


def test_loss_and_gradients_equal_trl_with_clipping_active(grounding_set, tiny_models, tmp_path):
    """β_ts = β: our loss and every parameter's gradient equal TRL's own `_compute_loss`, with
    `old_per_token_logps` far enough from the policy that the ratio is clipped, for each loss."""
    from tests.test_trainer import TEXTS, _scripted_batch, _stock_loss

    trainer = _trainer(make_cfg(grounding_set, tiny_models, tmp_path / "run", kl=(0.04, 0.04)))
    inputs = _scripted_batch(trainer, TEXTS)
    captured = {}
    real = trainer._get_per_token_logps_and_entropies

    def capture(*args, **kwargs):
        out = real(*args, **kwargs)
        captured["logps"] = out[0].detach()
        return out

    trainer._get_per_token_logps_and_entropies = capture
    with torch.no_grad():
        trainer._compute_loss(trainer.model, inputs)
    del trainer._get_per_token_logps_and_entropies
    noise = 0.6 * torch.randn(captured["logps"].shape, generator=torch.Generator().manual_seed(3))
    inputs["old_per_token_logps"] = captured["logps"] + noise
    eps = trainer.epsilon_low
    ratio = torch.exp(-noise)[inputs["completion_mask"].bool()]
    assert ((ratio < 1 - eps) | (ratio > 1 + eps)).float().mean() > 0.3  # clipping acts

    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def loss_and_grads(fn):
        trainer.model.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        return loss.detach(), [p.grad.clone() if p.grad is not None else None for p in params]

    for loss_type in ("grpo", "bnpo", "dapo", "dr_grpo"):
        trainer.loss_type = loss_type
        ours, ours_grads = loss_and_grads(lambda: trainer._compute_loss(trainer.model, inputs))
        stock, stock_grads = loss_and_grads(lambda: _stock_loss(trainer, inputs))
        assert torch.equal(ours, stock), loss_type
        assert sum(g is not None and bool(g.abs().sum() > 0) for g in ours_grads) > 10
        for a, b in zip(ours_grads, stock_grads, strict=True):
            assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), loss_type
    assert trainer._metrics["train"]["clip_ratio/region_mean"]


def test_the_trainers_own_timestamp_mask_on_real_rollouts(tiny_models, grounding_set, tmp_path):
    """Rollouts of the shipped toy SFT model (it answers ``<answer>S - E</answer>``): the mask the
    trainer attaches marks exactly the tokens of the numbers inside <answer>."""
    from scenetg.models.qwen import load_qwen

    model, processor = load_qwen(TOY_SFT, dtype="float32", device="cpu")
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run", max_completion_length=24)
    cfg.model = str(TOY_SFT)
    cfg.sampling.fps, cfg.sampling.max_frames = 4.0, 16
    trainer = _trainer(cfg, model, processor)
    rows = list(trainer.train_dataset)
    output = trainer._generate_and_score_completions([rows[0], rows[0], rows[2], rows[2]])
    mask, ids = output["timestamp_mask"], output["completion_ids"]
    assert mask.shape == ids.shape and mask.dtype == torch.bool
    tokenizer = processor.tokenizer
    answered = 0
    for row_mask, row_ids, row_keep in zip(mask, ids, output["completion_mask"], strict=True):
        text = tokenizer.decode(row_ids[row_keep.bool()])
        marked = tokenizer.decode(row_ids[row_mask]).replace(" ", "")
        if "<answer>" in text and "</answer>" in text:
            inside = text.split("<answer>")[-1].split("</answer>")[0]
            digits = "".join(ch for ch in inside if ch.isdigit() or ch == ".")
            if digits:
                answered += 1
                assert row_mask.any() and "".join(ch for ch in marked if ch.isdigit() or ch == ".") == digits
        else:
            assert not row_mask.any()
    assert answered >= 2  # real answers with numbers: the mask was tested, not skipped


def test_policy_and_reference_both_batch_vision_windows(grounding_set, tiny_models, tmp_path):
    """Full fine-tuning: TRL loads the reference itself; it must run the batched window attention
    as the policy does (`models.vision_windows`), not the per-window loop, and Qwen2.5-VL's
    reference M-RoPE positions (`models.rope_positions`), or its KL term compares the policy with
    a differently positioned input."""
    from scenetg.models.rope_positions import has_reference_positions
    from scenetg.models.vision_windows import _is_patched, _is_vision_attention

    trainer = _trainer(make_cfg(grounding_set, tiny_models, tmp_path / "run"))
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    for model in (trainer.model, trainer.ref_model):
        attention = [m for m in model.modules() if _is_vision_attention(m)]
        assert attention and all(_is_patched(m) for m in attention)
        assert has_reference_positions(model)
