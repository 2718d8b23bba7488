"""VideoGRPOTrainer: video through every pass, token-aware KL parity with TRL, TRL guard."""

from __future__ import annotations

import pytest
import torch

from tests.train_fixtures import make_cfg


def make_trainer(grounding_set, tiny_models, tmp_path, **kw):
    from scenetg.rl.train import build_trainer

    trainer, _, _ = build_trainer(make_cfg(grounding_set, tiny_models, tmp_path / "run", **kw))
    trainer.model.train()
    return trainer


def _video_rows(pixels: torch.Tensor) -> list[float]:
    """An order-free fingerprint of the video rows a vision tower was given."""
    return sorted(round(float(x), 3) for x in pixels.double().sum(dim=1))


def test_video_reaches_generation_reference_and_policy_passes(grounding_set, tiny_models, tmp_path):
    trainer = make_trainer(grounding_set, tiny_models, tmp_path)
    seen: dict[str, list] = {"policy": [], "ref": []}
    spg: dict[str, list] = {"policy": [], "ref": []}

    def hook(name):
        def fn(module, args, kwargs, output):
            seen[name].append(_video_rows(args[0]))
        return fn

    def rope_spy(name, model):
        real = model.model.get_rope_index

        def fn(*args, **kwargs):
            spg[name].append(kwargs.get("second_per_grid_ts"))
            return real(*args, **kwargs)
        model.model.get_rope_index = fn

    trainer.model.model.visual.register_forward_hook(hook("policy"), with_kwargs=True)
    trainer.ref_model.model.visual.register_forward_hook(hook("ref"), with_kwargs=True)
    rope_spy("policy", trainer.model)
    rope_spy("ref", trainer.ref_model)
    trainer.train()

    # generation + the loss's policy pass on the policy; the reference pass on the ref model
    assert len(seen["policy"]) == 2 and len(seen["ref"]) == 1
    generation, policy_loss = seen["policy"]
    assert seen["ref"][0] == generation and policy_loss == generation  # same video rows (any order)
    # second_per_grid_ts reached the model in every pass: 2 / (k / D) with k = 4 frames and
    # D = 6 or 4 s; never missing (Qwen would use 1 s per grid) nor the processor's 24 fps guess
    allowed = {2 / (4 / 6.0), 2 / (4 / 4.0)}
    assert len(spg["policy"]) >= 2 and len(spg["ref"]) >= 1
    for value in spg["policy"][:1] + spg["policy"][-1:] + spg["ref"]:
        assert value is not None and value.numel() == 4
        assert all(min(abs(v - a) for a in allowed) < 1e-6 for v in value.tolist())


def _scripted_batch(trainer, texts):
    """A real generated batch whose completions are replaced by `texts` (with timestamps),
    random advantages and a reference that differs from the policy."""
    from scenetg.rl.kl import timestamp_token_mask

    rows = list(trainer.train_dataset)
    rows = [rows[0], rows[0], rows[2], rows[2]]  # G = 2 rollouts per prompt, as TRL's sampler
    inputs = trainer._generate_and_score_completions(rows)
    tok = trainer._tokenizer
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")] for t in texts]
    width = max(map(len, ids))
    inputs["completion_ids"] = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    inputs["completion_mask"] = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    inputs["timestamp_mask"] = timestamp_token_mask(tok, inputs["completion_ids"])
    inputs["num_items_in_batch"] = inputs["completion_mask"].sum()
    g = torch.Generator().manual_seed(0)
    inputs["advantages"] = torch.randn(4, generator=g)
    inputs["ref_per_token_logps"] = -3.0 + 0.5 * torch.randn(4, width, generator=g)
    inputs.pop("old_per_token_logps", None)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); calling the loss directly
    return inputs


TEXTS = [
    "<think>the door</think><answer>1.5 - 3</answer>",
    "<think>dark</think><answer>0 - 2</answer>",
    "<think>x 7</think><answer>3 - 4</answer>",
    "no answer at 2",
]


def _stock_loss(trainer, inputs):
    from trl import GRPOTrainer

    from scenetg.rl.trainer import VideoBatch

    trainer._video = VideoBatch(
        list(inputs["pixel_values_videos"]), inputs["video_grid_thw"], inputs["second_per_grid_ts"]
    )
    try:
        return GRPOTrainer._compute_loss(trainer, trainer.model, inputs)
    finally:
        trainer._video = None


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_loss_equals_trl_when_beta_timestamp_equals_beta(loss_type, grounding_set, tiny_models, tmp_path):
    trainer = make_trainer(
        grounding_set, tiny_models, tmp_path, kl=(0.04, 0.04), loss_type=loss_type
    )
    inputs = _scripted_batch(trainer, TEXTS)
    assert inputs["timestamp_mask"].any()
    with torch.no_grad():
        ours = trainer._compute_loss(trainer.model, inputs)
        stock = _stock_loss(trainer, inputs)
        assert abs(float(ours) - float(stock)) <= 1e-6
        trainer.beta_timestamp = 0.0  # token-aware: now the loss must differ
        relaxed = trainer._compute_loss(trainer.model, inputs)
    assert abs(float(relaxed) - float(stock)) > 1e-6
    logged = trainer._metrics["train"]
    assert logged["kl_timestamp"] and logged["kl_other"]


def test_kl_gradient_is_zero_on_timestamp_tokens_only(grounding_set, tiny_models, tmp_path, monkeypatch):
    trainer = make_trainer(grounding_set, tiny_models, tmp_path, kl=(0.04, 0.0))
    inputs = _scripted_batch(trainer, TEXTS)
    width = inputs["completion_ids"].shape[1]
    base = (-2.5 + 0.3 * torch.randn(4, width, generator=torch.Generator().manual_seed(1)))

    def grads(beta, beta_ts):
        logps = base.clone().requires_grad_(True)
        monkeypatch.setattr(
            trainer, "_get_per_token_logps_and_entropies",
            lambda *a, **k: (logps, torch.zeros_like(base), None),
        )
        trainer.beta, trainer.beta_timestamp = beta, beta_ts
        trainer._compute_loss(trainer.model, inputs).backward()
        return logps.grad

    no_kl = grads(0.0, 0.0)
    token_aware = grads(0.04, 0.0) - no_kl
    plain = grads(0.04, 0.04) - no_kl
    ts = inputs["timestamp_mask"] & inputs["completion_mask"].bool()
    other = inputs["completion_mask"].bool() & ~ts
    assert ts.any() and other.any()
    assert torch.all(token_aware[ts] == 0)  # no pull back to the reference on timestamps
    assert torch.all(plain[ts] != 0)  # plain GRPO pulls them
    assert torch.allclose(token_aware[other], plain[other], atol=1e-9)  # the usual amount elsewhere
    assert torch.all(token_aware[other] != 0)


def test_trl_guard_fails_loudly_on_other_internals(monkeypatch):
    import trl
    from trl import GRPOTrainer

    from scenetg.rl.trainer import check_trl_internals

    check_trl_internals()
    monkeypatch.setattr(trl, "__version__", "1.17.0")
    with pytest.raises(RuntimeError, match="trl~=1.16.0"):
        check_trl_internals()
    monkeypatch.setattr(trl, "__version__", "1.16.9")

    def changed(self, model, inputs):
        return self.beta  # a TRL whose loss no longer adds `self.beta * per_token_kl`

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", changed)
    with pytest.raises(RuntimeError, match="_compute_loss"):
        check_trl_internals()


def test_rope_positions_read_frame_times_from_zero(tiny_models):
    """Qwen2.5-VL's 3-D positions: grid t sits at tokens_per_second × (time of its first frame)."""
    import numpy as np

    from scenetg.grounding.prompts import sample_video_times
    from scenetg.models.qwen import batch_video_inputs, load_qwen

    model, processor = load_qwen(tiny_models["qwen"], device="cpu")
    duration = 8.0
    times = sample_video_times(duration, fps=1.0, max_frames=8)
    assert times == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    frames = [np.full((36, 64, 3), 20 * i, dtype=np.uint8) for i in range(len(times))]
    inputs = batch_video_inputs(processor, [frames], [times], ["when?"], durations_s=[duration])
    spg = inputs["second_per_grid_ts"]
    assert float(spg[0]) == pytest.approx(2 / (len(times) / duration))  # temporal_patch / fps
    pos, _ = model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"], second_per_grid_ts=spg,
        attention_mask=inputs["attention_mask"],
    )
    video = inputs["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    temporal = pos[0, 0][video]
    t_grids = int(inputs["video_grid_thw"][0, 0])
    per_grid = temporal.numel() // t_grids
    tps = model.config.vision_config.tokens_per_second
    start = int(temporal[0])
    for g in range(t_grids):
        block = temporal[g * per_grid : (g + 1) * per_grid]
        assert torch.all(block == block[0])
        assert int(block[0]) - start == pytest.approx(tps * times[2 * g])


def test_prompts_from_datasets_rows_render_with_the_real_template(grounding_set, tiny_models):
    """Rows read back through `datasets` carry None-valued keys; the real Qwen2.5-VL template
    tests key presence, so they must be cleaned before rendering."""
    from pathlib import Path

    import datasets
    from transformers import AutoProcessor

    from scenetg.models.qwen import render_chat
    from scenetg.rl.config import DataConfig
    from scenetg.rl.train_data import load_training_data

    data = load_training_data(
        DataConfig(dataset=str(grounding_set / "train.jsonl"), video_root=str(grounding_set / "videos"))
    )
    row = datasets.Dataset.from_list(data.rows)[0]
    blocks = row["prompt"][0]["content"]
    assert any(k in b and b[k] is None for b in blocks for k in ("video", "text"))  # the pitfall
    processor = AutoProcessor.from_pretrained(tiny_models["qwen"])
    processor.chat_template = (Path(__file__).parent / "data" / "qwen2_5_vl_chat_template.jinja").read_text()
    text = render_chat(processor, row["prompt"])
    assert "<|image_pad|>" not in text
    assert text.count("<|vision_start|><|video_pad|><|vision_end|>") == 1
    assert '"the first scene"' in text and text.endswith("<|im_start|>assistant\n")
    # A dataset that also holds image rows gives every block an `image: None` key: uncleaned,
    # the real template renders an image placeholder for the text; cleaned, it does not.
    mixed = datasets.Dataset.from_list(
        [{"prompt": data.rows[0]["prompt"]},
         {"prompt": [{"role": "user", "content": [{"type": "image", "image": "x.png"}]}]}]
    )[0]["prompt"]
    raw = processor.apply_chat_template(mixed, tokenize=False, add_generation_prompt=True)
    assert "<|image_pad|>" in raw
    cleaned = render_chat(processor, mixed)
    assert "<|image_pad|>" not in cleaned and cleaned.count("<|video_pad|>") == 1


@pytest.mark.slow
@pytest.mark.parametrize("decode, cudnn_during_rollouts", [("no-cudnn", False), ("plain", True)])
def test_rollouts_decode_as_ground_does(grounding_set, tiny_models, tmp_path, decode, cudnn_during_rollouts):
    """Config key `decode`: with ``no-cudnn`` transformers rollouts run with SDPA kept off cuDNN
    attention (its per-KV-length graph builds cost every new decode step on a GPU), as
    `scenetg ground --decode` does; other passes and ``plain`` keep torch's choice."""
    from scenetg.rl.train import build_trainer
    from tests.train_fixtures import make_cfg

    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run")
    cfg.decode = decode
    trainer, _, _ = build_trainer(cfg)
    seen = []
    trainer.model.register_forward_pre_hook(
        lambda m, a: seen.append((torch.is_grad_enabled(), torch.backends.cuda.cudnn_sdp_enabled())))
    trainer.train()
    rollouts = [cudnn for grad, cudnn in seen if not grad]
    assert rollouts and all(c is cudnn_during_rollouts for c in rollouts)
    assert any(grad and cudnn for grad, cudnn in seen)  # the loss pass keeps torch's choice
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored


def test_rollout_decode_key_is_checked():
    from scenetg.errors import ConfigError
    from scenetg.rl.config import train_config_from_dict

    with pytest.raises(ConfigError, match="decode: expected one of auto, no-cudnn, plain, got 'static'"):
        train_config_from_dict({"decode": "static"})
