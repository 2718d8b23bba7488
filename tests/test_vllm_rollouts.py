"""vLLM rollouts with video (``grpo.use_vllm``, colocate): checked against a stand-in for vLLM's
`LLM` (tests/vllm_standin.py), not against real vLLM (it needs CUDA and is not installed here)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from scenetg.errors import ConfigError, ScenetgError
from tests import vllm_standin
from tests.train_fixtures import make_cfg


def _rows(pixels) -> list[float]:
    """An order-free fingerprint of video patch rows."""
    return sorted(round(float(x), 3) for x in pixels.double().sum(dim=1))


@pytest.mark.slow
def test_colocate_step_hands_vllm_our_video_and_trains_on_it(grounding_set, tiny_models, tmp_path, monkeypatch):
    from scenetg.grounding.samples import FrameSampling, sample_video
    from scenetg.rl.train import build_trainer

    llm_cls = vllm_standin.install(monkeypatch)
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run", use_vllm=True, vllm_mode="colocate",
                   vllm_gpu_memory_utilization=0.25, vllm_importance_sampling_correction=True)
    trainer, _, _ = build_trainer(cfg)
    (llm,) = llm_cls.instances
    assert llm.kwargs["gpu_memory_utilization"] == 0.25  # TRL's option reached the engine
    assert llm.kwargs["dtype"] == "float32"  # the policy's, not vLLM's auto (bf16 for fp32 weights)

    seen: dict[str, list] = {"policy": [], "ref": []}
    for name, model in (("policy", trainer.model), ("ref", trainer.ref_model)):
        model.model.visual.register_forward_hook(
            lambda m, a, k, o, name=name: seen[name].append(_rows(a[0])), with_kwargs=True
        )
    trainer.train()

    # one vLLM call: 2 prompts x 2 rollouts, each row with exactly one video
    assert len(llm.seen) == 4 and len(llm.sampling) == 1
    sampling = FrameSampling(2.0, 4, 64)
    by_duration = {row["duration_s"]: row["video_path"] for row in trainer.train_dataset}
    for item in llm.seen:
        meta = item["metadata"]
        duration = min(by_duration, key=lambda d: abs(d - meta["duration"]))
        ours = sample_video(by_duration[duration], duration, sampling)
        # the sampler's uint8 frames, unchanged, with the real fps k / D and no re-sampling
        assert item["frames"].dtype == np.uint8 and item["frames"].shape[0] == 4
        assert np.array_equal(item["frames"], np.stack(ours.frames))
        assert meta["fps"] == pytest.approx(4 / duration) and meta["do_sample_frames"] is False
        assert item["kwargs"]["do_sample_frames"] is False
        # vLLM's processor derives the same time step the trainer uses: 2 / fps, not 2 / 24
        assert float(item["second_per_grid_ts"][0]) == pytest.approx(2 / (4 / duration))
    # sampling: vision placeholders suppressed in vLLM's own terms (no suppress_tokens there)
    vision_ids = {trainer._tokenizer.convert_tokens_to_ids(t) for t in ("<|video_pad|>", "<|image_pad|>")}
    assert vision_ids <= set(llm.sampling[0].logit_bias)
    # TRL synced the policy weights into the engine and accepted completions and log-probs
    assert any("visual" in name for name in llm.loaded) and any("lm_head" in n or "embed" in n for n in llm.loaded)
    assert llm.encoder_cache_resets == 0  # a frozen vision tower keeps vLLM's encoder cache
    metrics = trainer.state.log_history[0]
    assert "sampling/sampling_logp_difference/mean" in metrics
    # same weights, same video, and the trainer scores the distribution vLLM samples from (the
    # vision placeholders' logit bias included: without it 6.4e-3 mean, ratio 0.949-0.952);
    # measured 9.5e-7, the stand-in decoding with a KV cache
    assert metrics["sampling/sampling_logp_difference/max"] < 1e-5
    assert 1 - 1e-5 <= metrics["sampling/importance_sampling_ratio/min"] <= 1 + 1e-5
    assert 1 - 1e-5 <= metrics["sampling/importance_sampling_ratio/max"] <= 1 + 1e-5
    assert trainer.model.lm_head.bias is None  # the bias is the passes', not the saved model's
    # the same video rows vLLM was given reach the vision tower in the old, reference and loss passes
    # (each distinct video once: rollouts of a prompt share one encoding, models.shared_video_encoding)
    from scenetg.models.shared_video_encoding import shares_video_encoding

    distinct = {tuple(_rows(item["pixel_values_videos"])) for item in llm.seen}
    vllm_rows = sorted(x for video in distinct for x in video)
    assert len(seen["policy"]) == 2 and len(seen["ref"]) == 1
    for rows, model in zip(seen["policy"] + seen["ref"], [trainer.model] * 2 + [trainer.ref_model], strict=True):
        if shares_video_encoding(model):
            assert rows == vllm_rows
        else:  # transformers without the shared encoding (5.17, the [vllm] extra's): once per row
            assert sorted(set(rows)) == sorted(set(vllm_rows))


def test_a_wrong_placeholder_run_is_rejected(tiny_models):
    """vLLM 0.31 expands a prompt's first <|video_pad|> to the grid and reads further pads as
    text: the stand-in refuses a prompt with more than one (`VideoLLM` collapses TRL's run)."""
    from scenetg.grounding.samples import SampledVideo
    from scenetg.rl.vllm_video import vllm_video_item

    llm = vllm_standin.StandInLLM(str(tiny_models["qwen"]))
    video = SampledVideo([np.zeros((36, 64, 3), np.uint8)] * 4, [0.0, 1.0, 2.0, 3.0], 4.0)
    row = {"prompt_token_ids": [llm.video_pad] * 3, "multi_modal_data": {"video": vllm_video_item(video)}}
    with pytest.raises(ValueError, match="3 <|video_pad|> tokens: vLLM expands one"):
        llm.generate([row], vllm_standin.SamplingParams(max_tokens=2))


def test_video_llm_gives_vllm_one_pad_per_video_and_trl_its_own_prompt_ids():
    from scenetg.rl.vllm_video import VideoLLM, collapse_video_pads

    assert collapse_video_pads([1, 9, 9, 9, 2, 9, 3], 9) == [1, 9, 2, 9, 3]
    sent = []

    class Engine:
        def generate(self, rows, *args, **kwargs):
            sent.extend(rows)
            return [SimpleNamespace(prompt_token_ids=list(r["prompt_token_ids"]), outputs=[]) for r in rows]

    llm = VideoLLM(Engine(), {}, video_pad_id=9)
    llm.videos = ["v"]
    (out,) = llm.generate([{"prompt_token_ids": [5, 8, 9, 9, 9, 9, 7, 6]}])
    assert sent[0]["prompt_token_ids"] == [5, 8, 9, 7, 6]
    assert out.prompt_token_ids == [5, 8, 9, 9, 9, 9, 7, 6]  # what TRL builds the trainer's rows from


def test_video_llm_needs_one_video_per_prompt():
    from scenetg.rl.vllm_video import VideoLLM

    calls = []
    llm = VideoLLM(type("E", (), {"generate": lambda self, rows, **kw: calls.append(rows)})(), {"x": 1})
    llm.videos = ["v1", "v2"]
    llm.generate([{"prompt_token_ids": [1]}, {"prompt_token_ids": [2]}], sampling_params=None)
    assert [r["multi_modal_data"]["video"] for r in calls[0]] == ["v1", "v2"]
    assert calls[0][0]["mm_processor_kwargs"] == {"x": 1}
    with pytest.raises(RuntimeError, match="2 prompts but none"):  # videos are used once
        llm.generate([{"prompt_token_ids": [1]}, {"prompt_token_ids": [2]}])


def test_config_takes_colocate_and_refuses_server(grounding_set, tiny_models, tmp_path):
    cfg = make_cfg(grounding_set, tiny_models, tmp_path, use_vllm="true", vllm_mode="colocate",
                   vllm_tensor_parallel_size=1, vllm_enable_sleep_mode=True)
    assert cfg.grpo["use_vllm"] is True
    with pytest.raises(ConfigError, match="trl vllm-serve.*image features only.*vllm_mode: colocate"):
        make_cfg(grounding_set, tiny_models, tmp_path, use_vllm=True, vllm_mode="server")
    assert make_cfg(grounding_set, tiny_models, tmp_path, vllm_mode="server").grpo["vllm_mode"] == "server"


def test_grpo_options_reach_trl_config(grounding_set, tiny_models, tmp_path):
    from scenetg.rl.train import grpo_args

    cfg = make_cfg(grounding_set, tiny_models, tmp_path, use_vllm=True, vllm_gpu_memory_utilization=0.4,
                   vllm_tensor_parallel_size=2, vllm_enable_sleep_mode=True,
                   vllm_importance_sampling_mode="token_truncate")
    args = grpo_args(cfg, "cpu")
    assert args.use_vllm and args.vllm_mode == "colocate"
    assert (args.vllm_gpu_memory_utilization, args.vllm_tensor_parallel_size) == (0.4, 2)
    assert args.vllm_enable_sleep_mode and args.vllm_importance_sampling_mode == "token_truncate"


def test_vllm_version_and_install_checks(monkeypatch):
    import sys

    from scenetg.rl.vllm_video import check_vllm_for_video

    vllm_standin.install(monkeypatch, version="0.29.0")
    with pytest.raises(ConfigError, match="vLLM 0.29.0 drops Qwen2.5-VL video metadata.*vllm>=0.30.0"):
        check_vllm_for_video("colocate")
    vllm_standin.install(monkeypatch, version="0.31.0")
    check_vllm_for_video("colocate")
    with pytest.raises(ConfigError, match="server"):
        check_vllm_for_video("server")

    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed: import fails
    with pytest.raises(ScenetgError, match=r"\[vllm\] extra"):
        check_vllm_for_video("colocate")


def test_missing_vllm_stops_train_before_the_model_loads(grounding_set, tiny_models, tmp_path, monkeypatch):
    import sys

    from scenetg.rl import train

    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    monkeypatch.setattr(train, "load_policy", lambda *a: pytest.fail("the model loaded first"))
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "run", use_vllm=True)
    with pytest.raises(ScenetgError, match=r"grpo.use_vllm needs the \[vllm\] extra"):
        train.build_trainer(cfg)


def test_trl_guard_covers_the_vllm_backend(monkeypatch):
    from trl.generation.vllm_generation import VLLMGeneration

    from scenetg.rl.trainer import check_trl_internals

    def changed(self, prompts, images, num_generations, profiler=None):
        return self.llm.chat(prompts)  # a TRL that no longer calls llm.generate on token-id rows

    monkeypatch.setattr(VLLMGeneration, "generate", changed)
    with pytest.raises(RuntimeError, match="VLLMGeneration.generate"):
        check_trl_internals()


def test_tensor_parallel_group_gets_videos_in_trl_prompt_order(monkeypatch):
    """With vllm_tensor_parallel_size > 1 TRL gathers the group's prompts rank by rank; the videos
    are gathered the same way, each rank's rows converted once per distinct video."""
    from types import SimpleNamespace

    import torch

    from scenetg.grounding.samples import SampledVideo
    from scenetg.rl.trainer import VideoGRPOTrainer

    a = SampledVideo([np.full((28, 28, 3), 1, np.uint8)] * 2, [0.0, 1.0], 2.0)
    b = SampledVideo([np.full((28, 28, 3), 2, np.uint8)] * 2, [0.0, 2.0], 4.0)
    other_rank = ["rank1-video"]

    def all_gather_object(out, obj, group=None):
        assert group == "tp-group"
        out[:] = [obj, other_rank]

    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    fake = SimpleNamespace(
        _rows_videos=[a, a, b], vllm_generation=SimpleNamespace(tensor_parallel_size=2, tp_group="tp-group")
    )
    from scenetg.rl import trainer as trainer_module

    converted = []
    real_item = trainer_module.vllm_video_item
    monkeypatch.setattr(trainer_module, "vllm_video_item", lambda v: converted.append(v) or real_item(v))
    items = VideoGRPOTrainer._vllm_videos(fake, 3)
    assert converted == [a, b]
    assert len(items) == 4 and items[3] == "rank1-video"
    assert items[0] is items[1] and items[0] is not items[2]  # one conversion per distinct video
    assert items[0][1]["fps"] == pytest.approx(1.0) and items[2][1]["fps"] == pytest.approx(0.5)
    with pytest.raises(RuntimeError, match="out of step"):
        VideoGRPOTrainer._vllm_videos(fake, 2)


def test_trl_guard_covers_the_weight_sync(monkeypatch):
    """`rl.vllm_sync` wraps TRL's colocate sync and swaps the backend class GRPOTrainer builds: a
    TRL whose code differs there fails the guard."""
    from trl import GRPOTrainer
    from trl.generation.vllm_generation import VLLMGeneration

    from scenetg.rl.trainer import check_trl_internals

    def changed_sync(self):
        for name, param in self._iter_named_params():
            self.llm.collective_rpc("update", args=(name, param))  # a TRL that loads another way

    monkeypatch.setattr(VLLMGeneration, "sync_weights", changed_sync)
    with pytest.raises(RuntimeError, match="VLLMGeneration.sync_weights"):
        check_trl_internals()
    monkeypatch.undo()

    def changed_init(self, *args, **kwargs):
        self.vllm_generation = None  # a TRL that no longer builds VLLMGeneration by that name

    monkeypatch.setattr(GRPOTrainer, "__init__", changed_init)
    with pytest.raises(RuntimeError, match="GRPOTrainer.__init__"):
        check_trl_internals()


class _Model:
    def __init__(self, **trainable):
        import torch

        self.params = {n: torch.nn.Parameter(torch.zeros(1), requires_grad=t) for n, t in trainable.items()}

    def named_parameters(self):
        return iter(self.params.items())


def test_trainable_vision_reads_the_policy_names():
    from scenetg.rl.vllm_sync import trainable_vision

    frozen = {"model.visual.blocks.0.attn.qkv.weight": False, "model.language_model.layers.0.q.weight": True}
    assert not trainable_vision(_Model(**frozen))
    assert trainable_vision(_Model(**{**frozen, "model.visual.merger.mlp.0.weight": True}))
    # PEFT's prefix (LoRA on the vision tower), and a model whose tower sits at the top level
    assert trainable_vision(_Model(**{"base_model.model.model.visual.blocks.0.lora_A.weight": True}))
    assert trainable_vision(_Model(**{"visual.patch_embed.proj.weight": True}))
    assert not trainable_vision(_Model(**{"model.language_model.visual_proj.weight": True}))


@pytest.mark.parametrize("on_cpu", [True, False])
@pytest.mark.parametrize("vision", [True, False])
def test_sync_wraps_trl_loads_in_layerwise_reload_on_cpu_and_resets_the_encoder_cache(
    monkeypatch, on_cpu, vision
):
    """The order the override guarantees: (CPU) layerwise reload opened, TRL's own per-parameter
    loads, reload finalised, then (trainable vision) the encoder cache reset; server mode is
    TRL's untouched. The real engine is exercised in tests/test_vllm_rollouts_real.py."""
    import contextlib
    from types import SimpleNamespace

    from trl.generation.vllm_generation import VLLMGeneration

    from scenetg.rl import vllm_sync

    calls = []
    monkeypatch.setattr(vllm_sync, "engine_on_cpu", lambda: on_cpu)

    @contextlib.contextmanager
    def layerwise(runner):
        calls.append(("init", runner.name))
        yield
        calls.append(("finalize", runner.name))

    monkeypatch.setattr(vllm_sync, "layerwise_reload", layerwise)
    monkeypatch.setattr(VLLMGeneration, "sync_weights", lambda self: calls.append(("trl", self.mode)))
    engine = object.__new__(vllm_sync.VideoVLLMGeneration)
    engine.mode = "colocate"
    engine.model = _Model(**{"model.visual.blocks.0.weight": vision, "model.lm_head.weight": True})
    runner = SimpleNamespace(name="runner")
    engine.llm = SimpleNamespace(llm_engine=SimpleNamespace(
        model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)),
        reset_encoder_cache=lambda: calls.append(("reset_encoder_cache",)),
    ))
    engine.sync_weights()
    expected = [("trl", "colocate")]
    if on_cpu:
        expected = [("init", "runner"), *expected, ("finalize", "runner")]
    if vision:
        expected.append(("reset_encoder_cache",))
    assert calls == expected

    calls.clear()
    engine.mode = "server"
    engine.sync_weights()
    assert calls == [("trl", "server")]


def test_engine_is_built_in_the_policy_dtype(monkeypatch):
    """TRL builds LLM(...) without a dtype (vLLM's auto: bf16 for fp32 weights); ours passes the
    policy's, and TRL's module keeps its own LLM afterwards."""
    import torch
    from trl.generation import vllm_generation as trl_vllm

    from scenetg.rl.vllm_sync import VideoVLLMGeneration

    built = []
    stock = lambda **kw: built.append(kw)  # noqa: E731
    monkeypatch.setattr(trl_vllm, "LLM", stock, raising=False)
    monkeypatch.setattr(trl_vllm.VLLMGeneration, "_init_vllm", lambda self: trl_vllm.LLM(model="m"))
    engine = object.__new__(VideoVLLMGeneration)
    for dtype, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
        engine.model = type("M", (), {"dtype": dtype})()
        engine._init_vllm()
        assert built[-1] == {"model": "m", "dtype": name}
    assert trl_vllm.LLM is stock


def _fused_logps(model, ids):
    import torch

    labels = ids.clone()
    labels[:, :1] = -100
    return model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True).log_probs


def test_log_prob_passes_score_the_distribution_vllm_samples_from(tiny_models):
    """Under `lm_head_bias`, TRL's fused LM head (what every GRPO log-prob pass runs) gives the
    log-probs of the biased logits, as vLLM's processed log-probs do; outside it, the model's own."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from trl.trainer.utils import add_fused_lm_head

    from scenetg.rl.logit_bias import lm_head_bias, sampling_logit_bias

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_models["qwen"], dtype=torch.float32).eval()
    add_fused_lm_head(model)
    args = SimpleNamespace(use_vllm=True, generation_kwargs={"logit_bias": {"3": -100.0, 5: 2.5}})
    bias = sampling_logit_bias(args)
    assert bias == {3: -100.0, 5: 2.5}
    assert sampling_logit_bias(SimpleNamespace(**{**vars(args), "use_vllm": False})) == {}
    ids = torch.tensor([[7, 5, 9, 5, 11, 3, 12]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
        shifted = logits.clone()
        shifted[:, 3] -= 100.0
        shifted[:, 5] += 2.5
        want = torch.log_softmax(shifted, -1)[torch.arange(6), ids[0, 1:]]
        plain = torch.log_softmax(logits, -1)[torch.arange(6), ids[0, 1:]]
        with lm_head_bias(model, bias):
            got = _fused_logps(model, ids)[0]
        after = _fused_logps(model, ids)[0]
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    assert torch.allclose(after, plain, atol=1e-5) and model.lm_head.bias is None


def test_a_sharded_lm_head_runs_unbiased_with_a_warning(tiny_models):
    """FSDP 2 / ZeRO-3 heads are gathered by TRL with their bias: a plain tensor there would fail,
    so the passes run as TRL's own and say what the IS ratio then carries."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from scenetg.rl.logit_bias import lm_head_bias

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_models["qwen"], dtype=torch.float32)
    model.lm_head.weight.ds_id = 0  # how DeepSpeed ZeRO-3 marks a partitioned parameter
    with pytest.warns(RuntimeWarning, match="sharded"), lm_head_bias(model, {3: -100.0}):
        assert model.lm_head.bias is None
