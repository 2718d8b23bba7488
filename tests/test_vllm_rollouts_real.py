"""GRPO with real vLLM rollouts (``grpo.use_vllm``, colocate) on vLLM's CPU build.

Run in the vLLM environment (``make test-vllm``: ``pytest -m vllm``); skipped where vLLM is not
installed. One engine is started for the module (20-70 s on a 2-core machine): a 2-step
``scenetg train`` on the head_dim-64 tiny Qwen2.5-VL, with every pass's video inputs recorded;
the weight-sync tests then use that run's engine.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.vllm

from scenetg.models.rope_positions import has_reference_positions  # noqa: E402
from tests.train_fixtures import QUERIES  # noqa: E402

SAMPLING = {"fps": 2.0, "max_frames": 4, "max_side": 64}
IS_RATIO_BOUND = 1e-5
"""|importance-sampling ratio - 1| and |log-prob difference| allowed on the run's rollouts (fp32 on
both sides; measured 1.0e-6 and 4.8e-7, float32 rounding: the text prompt's bound)."""
TEXT_LOGP_BOUND = 1e-5
"""|log-prob difference| allowed between vLLM and the trainer on a text prompt (measured 5e-7)."""


@pytest.fixture(scope="module")
def vllm_qwen(tmp_path_factory):
    from scenetg.models.tiny import make_tiny_qwen

    return make_tiny_qwen(tmp_path_factory.mktemp("vllm_qwen"), vllm_compatible=True)


def _videos_by_query(root):
    """query text -> (video path, duration) of the `grounding_set` rows."""
    return {text: (root / "videos" / f"{vid}.mp4", dur) for _, vid, dur, text, _ in QUERIES}


def _expected_inputs(root, processor):
    """Per video (keyed by duration): the pixels and seconds per grid our own processor call
    gives its sampled frames: what every pass must see for a row of that video."""
    from scenetg.grounding.samples import FrameSampling, sample_video
    from scenetg.models.qwen import processor_video_inputs

    sampling = FrameSampling(**SAMPLING)
    out = {}
    for path, duration in set(_videos_by_query(root).values()):
        video = sample_video(path, duration, sampling)
        inputs = processor_video_inputs(processor, ["<|vision_start|><|video_pad|><|vision_end|>"],
                                        [video.frames], [video.times_s], durations_s=[duration])
        out[duration] = (inputs["pixel_values_videos"], float(inputs["second_per_grid_ts"][0]))
    return out


class Recorder:
    """What each pass was given, one entry per row: (pass, prompt text, pixels, seconds per grid).
    vLLM's rows name their video by its input hash; `encoded` maps each hash to the pixels vLLM's
    vision encoder ran on for it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.rows: list[tuple[str, str, object, float]] = []
        self.encoded: dict[str, torch.Tensor] = {}

    def hf_pass(self, name):
        def hook(module, args, kwargs):
            if "video_grid_thw" not in kwargs:  # a text prompt of the tests below
                return
            ids, grid = kwargs["input_ids"], kwargs["video_grid_thw"]
            pixels = torch.split(kwargs["pixel_values_videos"], grid.prod(-1).tolist())
            for row, chunk, spg in zip(ids, pixels, kwargs["second_per_grid_ts"].tolist(), strict=True):
                self.rows.append((name, self.tokenizer.decode(row), chunk.detach().clone(), spg))
        return hook

    def vllm_positions(self, original):
        def get_mrope_input_positions(input_tokens, mm_features):
            if not mm_features:  # a text prompt of the tests below
                return original(input_tokens, mm_features)
            (feature,) = mm_features  # one video per prompt
            spg = float(feature.data["second_per_grid_ts"].data)
            self.rows.append(("vllm", self.tokenizer.decode(input_tokens), feature.identifier, spg))
            return original(input_tokens, mm_features)
        return get_mrope_input_positions

    def vllm_encoder_inputs(self, original):
        def batch_mm_inputs_from_scheduler(*args, **kwargs):
            out = original(*args, **kwargs)
            hashes, items = out[0], out[1]
            for mm_hash, (_, item) in zip(hashes, items, strict=True):
                self.encoded[mm_hash] = item["pixel_values_videos"].data.detach().clone()
            return out
        return batch_mm_inputs_from_scheduler


@pytest.fixture(scope="module")
def run(grounding_set, vllm_qwen, tmp_path_factory):
    """``scenetg train`` for 2 steps with ``use_vllm: true`` and a trainable vision tower. Between
    the steps every policy weight is moved (as an optimizer step with non-zero rewards would;
    the tiny random model earns none), so step 2's rollouts agree with the trainer only if the
    sync carried all of them, vision included, into vLLM."""
    from transformers import TrainerCallback

    from scenetg.cli import main
    from scenetg.rl import train as train_module

    out = tmp_path_factory.mktemp("vllm_run")
    # rows interleaved by video (a1, b1, a2, b2): with seed 0 TRL's sampler takes rows 0, 1 then
    # 3, 2, so each step's batch holds both videos and a pass that mixed rows would show
    a1, a2, b1, b2 = (grounding_set / "train.jsonl").read_text().splitlines()
    (out / "train.jsonl").write_text("\n".join([a1, b1, a2, b2]) + "\n")
    cfg = {
        "model": str(vllm_qwen), "output_dir": str(out / "run"), "device": "cpu", "dtype": "float32",
        "freeze_vision": False,
        "data": {"dataset": str(out / "train.jsonl"), "video_root": str(grounding_set / "videos")},
        "sampling": SAMPLING, "lora": {"enabled": False},
        "grpo": {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 8,
                 "max_steps": 2, "save_steps": 1000, "report_to": "none", "seed": 0,
                 "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.1},
    }
    (out / "train.yaml").write_text(yaml.safe_dump(cfg))

    class MoveWeights(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            gen = torch.Generator().manual_seed(state.global_step)
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(0.05 * torch.randn(param.shape, generator=gen) * param.std().nan_to_num())

    built = {}
    real_build = train_module.build_trainer

    def build(*args, **kwargs):
        trainer, processor, n_rows = real_build(*args, **kwargs)
        rec = Recorder(processor.tokenizer)
        trainer.model.register_forward_pre_hook(rec.hf_pass("policy"), with_kwargs=True)
        trainer.ref_model.register_forward_pre_hook(rec.hf_pass("ref"), with_kwargs=True)
        runner = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.get_mrope_input_positions = rec.vllm_positions(runner.model.get_mrope_input_positions)
        runner._batch_mm_inputs_from_scheduler = rec.vllm_encoder_inputs(runner._batch_mm_inputs_from_scheduler)
        trainer.add_callback(MoveWeights())
        built.update(trainer=trainer, processor=processor, recorder=rec)
        return trainer, processor, n_rows

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "build_trainer", build)
        code = main(["--debug", "train", "--config", str(out / "train.yaml")])
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return SimpleNamespace(code=code, out=out / "run", metrics=metrics, **built)


def test_two_step_train_with_vllm_rollouts_writes_a_run(run):
    from scenetg.models.qwen import load_qwen

    assert run.code == 0
    steps = [m for m in run.metrics if "reward" in m]
    assert [m["step"] for m in steps] == [1, 2]
    # the trainer's passes number the text after a video as vLLM does (`models.rope_positions`)
    assert has_reference_positions(run.trainer.model) and has_reference_positions(run.trainer.ref_model)
    model, _ = load_qwen(run.out / "final", dtype="float32", device="cpu")
    trained = dict(run.trainer.model.named_parameters())
    for name, param in model.named_parameters():  # final/ holds the trained (moved) weights
        assert torch.equal(param, trained[name]), name


def test_importance_sampling_ratio_is_one_in_fp32(run):
    """vLLM's sampling log-probs and the trainer's agree on every rollout token of both steps
    within `IS_RATIO_BOUND` (measured 2026-12-06: |ratio - 1| <= 1.0e-6, |dlogp| <= 4.8e-7): the
    engine runs in the policy's dtype, gets the trainer's prompt (one pad per video, `VideoLLM`)
    with its M-RoPE positions, step 2 samples from the synced (moved) weights, and the trainer
    scores the distribution vLLM samples from, the vision placeholders' logit bias included
    (`rl.logit_bias`; without it ratio 0.955-0.994, |dlogp| up to 6.3e-3)."""
    bias = run.trainer.args.generation_kwargs["logit_bias"]  # what vLLM sampled with
    pad = run.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert bias[pad] == -100.0
    steps = [m for m in run.metrics if "reward" in m]
    assert len(steps) == 2
    for m in steps:
        print("IS ratio min / max, |dlogp| max:", m["sampling/importance_sampling_ratio/min"],
              m["sampling/importance_sampling_ratio/max"], m["sampling/sampling_logp_difference/max"])
        assert 1 - IS_RATIO_BOUND <= m["sampling/importance_sampling_ratio/min"] <= 1 + IS_RATIO_BOUND
        assert 1 - IS_RATIO_BOUND <= m["sampling/importance_sampling_ratio/max"] <= 1 + IS_RATIO_BOUND
        assert m["sampling/sampling_logp_difference/max"] < IS_RATIO_BOUND


def test_each_row_video_reaches_vllm_and_every_logprob_pass(run, grounding_set):
    """Every row of every pass (vLLM's prompt, the policy's old/loss passes, the reference)
    carries the pixels and the seconds per grid of its own video, computed from our frames."""
    expected = _expected_inputs(grounding_set, run.processor)
    videos = _videos_by_query(grounding_set)
    counts: dict[str, int] = {}
    for name, text, pixels, spg in run.recorder.rows:
        (query,) = [q for q in videos if q in text]
        want_pixels, want_spg = expected[videos[query][1]]
        if name == "vllm":  # the pixels vLLM's vision encoder ran on for this request's video
            pixels = _normalized(run.recorder.encoded[pixels], run.processor)
        assert spg == pytest.approx(want_spg), (name, query)
        assert pixels.shape == want_pixels.shape, (name, query)
        assert torch.allclose(pixels, want_pixels, atol=1e-5, rtol=0), (name, query)
        counts[name] = counts.get(name, 0) + 1
    # 2 steps x 4 rows (2 prompts x 2 rollouts) in vLLM, the policy's old-log-prob and loss
    # passes and the reference pass
    assert counts == {"vllm": 8, "policy": 16, "ref": 8}
    # both videos in each step's vLLM call (4 rows each), so a swap between rows is visible
    vllm_rows = [text for name, text, _, _ in run.recorder.rows if name == "vllm"]
    for step in (vllm_rows[:4], vllm_rows[4:8]):
        assert len({videos[q][1] for q in videos for text in step if q in text}) == 2


def _normalized(pixels, processor):
    """vLLM 0.31 hands Qwen2.5-VL uint8 patches and normalises them in the model
    (``mm_device_do_normalize``): the same rescale and mean/std as our processor's, per channel
    (the slowest axis of a flattened patch)."""
    if pixels.dtype != torch.uint8:
        return pixels
    vp = processor.video_processor
    mean = torch.tensor(vp.image_mean).view(1, 3, 1)
    std = torch.tensor(vp.image_std).view(1, 3, 1)
    x = pixels.float().view(pixels.shape[0], 3, -1) * vp.rescale_factor
    return ((x - mean) / std).view(pixels.shape)


def _greedy(run, uuid=None):
    """Greedy tokens and log-probs of video a's first query through the run's engine; `uuid`
    names the video input (a new name bypasses vLLM's encoder cache)."""
    from vllm import SamplingParams

    from scenetg.grounding.samples import FrameSampling, sample_video
    from scenetg.rl.vllm_video import collapse_video_pads, vllm_video_item

    trainer = run.trainer
    row = trainer.train_dataset[0]
    video = sample_video(row["video_path"], row["duration_s"], FrameSampling(**SAMPLING))
    trainer._rows_videos = [video]
    try:
        (ids,), _, _ = trainer._tokenize_prompts([row["prompt"]])
    finally:
        trainer._rows_videos = trainer._video = None
    ids = collapse_video_pads(ids, trainer._video_pad_token_id)  # as `VideoLLM` sends it
    request = {"prompt_token_ids": ids, "multi_modal_data": {"video": vllm_video_item(video)},
               "mm_processor_kwargs": dict(trainer.vllm_generation.llm.processor_kwargs)}
    if uuid is not None:
        request["multi_modal_uuids"] = {"video": [uuid]}
    params = SamplingParams(temperature=0.0, max_tokens=6, logprobs=0)
    (out,) = trainer.vllm_generation.llm.llm.generate([request], params, use_tqdm=False)
    completion = out.outputs[0]
    return completion.token_ids, [lp[t].logprob for lp, t in zip(completion.logprobs, completion.token_ids, strict=True)]


def test_stock_trl_sync_fails_on_the_cpu_build(run):
    """Why `rl.vllm_sync` exists: TRL's per-parameter load hits a repacked linear weight."""
    from trl.generation.vllm_generation import VLLMGeneration

    with pytest.raises(AttributeError, match="weight_loader"):
        VLLMGeneration.sync_weights(run.trainer.vllm_generation)


def test_synced_vision_weights_reach_a_recurring_video(run):
    """After a sync that changes the vision tower, a video vLLM has encoded before rolls out on
    the new weights: exactly what a never-seen input name (encoded now) gives."""
    visual = run.trainer.model.model.visual
    before = _greedy(run)  # video a: encoded (and cached) with the current weights
    assert _greedy(run) == before
    with torch.no_grad():
        for param in visual.parameters():
            param.mul_(-1.5)
    run.trainer.vllm_generation.sync_weights()
    after = _greedy(run)
    fresh = _greedy(run, uuid="never-seen-before")
    assert after == fresh
    assert after[1] != before[1]  # the vision change matters to the rollout


def test_frozen_vision_keeps_the_encoder_cache(run, monkeypatch):
    """The reset policy: a sync of a policy whose vision tower cannot change (frozen) keeps vLLM's
    encoder outputs; a trainable one resets them."""
    from scenetg.rl import vllm_sync

    engine = run.trainer.vllm_generation
    resets = []
    monkeypatch.setattr(type(engine.llm.llm.llm_engine), "reset_encoder_cache",
                        lambda self: resets.append(1), raising=True)
    visual = run.trainer.model.model.visual
    visual.requires_grad_(False)
    try:
        engine.sync_weights()
        assert resets == [] and not vllm_sync.trainable_vision(run.trainer.model)
        next(visual.parameters()).requires_grad_(True)
        engine.sync_weights()
        assert resets == [1]
    finally:
        visual.requires_grad_(True)


def test_layerwise_sync_loads_trainer_weights_exactly(run):
    """After the override's sync of moved language-model weights, vLLM's (repacked) engine gives
    the trainer model's log-probs on a text prompt to float32 rounding (measured: 5e-7)."""
    from vllm import SamplingParams

    trainer = run.trainer
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if not name.startswith("model.visual"):
                param.mul_(1.2)
    trainer.vllm_generation.sync_weights()
    ids = trainer.processing_class.tokenizer("the first scene starts at")["input_ids"]
    params = SamplingParams(temperature=0.0, max_tokens=6, logprobs=0)
    (out,) = trainer.vllm_generation.llm.llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)
    tokens = list(out.outputs[0].token_ids)
    vllm_logps = [lp[t].logprob for lp, t in zip(out.outputs[0].logprobs, tokens, strict=True)]
    full = torch.tensor([ids + tokens])
    with torch.no_grad():
        logits = trainer.model(input_ids=full, attention_mask=torch.ones_like(full)).logits[0, len(ids) - 1:-1]
    hf_logps = torch.log_softmax(logits.float(), -1)[torch.arange(len(tokens)), torch.tensor(tokens)]
    assert np.allclose(hf_logps.numpy(), vllm_logps, atol=TEXT_LOGP_BOUND)
