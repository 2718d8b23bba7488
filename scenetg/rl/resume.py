"""Full fine-tuning resume that restores the weights, for every trainer of `scenetg train`.

transformers 5 saves Qwen2.5-VL under checkpoint-era key names (``model.layers.*``, ``visual.*``)
and its Trainer's resume loads them with ``strict=False`` against the module names
(``model.language_model.*``, ``model.visual.*``): nothing loads, a warning lists every key, and
the run goes on from the start weights with the checkpoint's step, optimizer and schedule.
`FullModelResume` loads through the class's own renaming (`models.checkpoint_weights`) and fails
naming the folder when a weight would be left out. LoRA checkpoints (adapter files) and FSDP
take the library's path.
"""

from __future__ import annotations

from typing import Any

from scenetg.models.checkpoint_weights import has_full_weights, load_checkpoint_weights


class FullModelResume:
    """Mixin for a transformers `Trainer` subclass (before the Trainer in the bases)."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        if has_full_weights(resume_from_checkpoint) and not self.is_fsdp_enabled:
            load_checkpoint_weights(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)
