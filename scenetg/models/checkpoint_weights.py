"""Load a `save_pretrained` folder's weights into a model that is already built (training resume).

transformers 5 saves Qwen2.5-VL under the checkpoint-era key names (``model.layers.*``,
``visual.*``) and converts them to the module names (``model.language_model.*``,
``model.visual.*``) only inside ``from_pretrained``. The Trainer's resume loads the file with
``load_state_dict(strict=False)`` against the module names, so nothing loads and the run goes on
from the start weights. Here each saved key goes through the model class's own renaming (the
list ``from_pretrained`` used, ``model._weight_conversions``), and every parameter must load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scenetg.errors import ModelError

SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
MAX_LISTED_KEYS = 3


def has_full_weights(folder: str | Path) -> bool:
    """True when `folder` holds a whole model's safetensors (one file or an index of shards)."""
    folder = Path(folder)
    return (folder / SAFE_WEIGHTS).is_file() or (folder / SAFE_WEIGHTS_INDEX).is_file()


def read_saved_weights(folder: str | Path) -> dict[str, Any]:
    """Every tensor of the folder's safetensors (sharded or not), on the CPU, under its saved name."""
    from safetensors.torch import load_file  # deferred: pulls torch

    folder = Path(folder)
    if (folder / SAFE_WEIGHTS).is_file():
        return load_file(folder / SAFE_WEIGHTS, device="cpu")
    index = folder / SAFE_WEIGHTS_INDEX
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{index}: unreadable safetensors index ({exc})") from None
    state: dict[str, Any] = {}
    for shard in shards:
        state.update(load_file(folder / shard, device="cpu"))
    return state


def to_module_names(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """`state` with each key renamed as ``from_pretrained`` renames it for `model`'s class."""
    from transformers.conversion_mapping import (  # deferred: pulls transformers
        get_model_conversion_mapping,
    )
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None:
        conversions = get_model_conversion_mapping(model)
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    renamed: dict[str, Any] = {}
    for key, tensor in state.items():
        new_key, converter = rename_source_key(key, renamings, converters)
        if converter is not None:  # a many-to-one tensor conversion (fused experts, ...): not a rename
            raise ModelError(
                f"{type(model).__name__}: checkpoint key {key} needs a tensor conversion; "
                f"resuming this model class from a full checkpoint is not supported"
            )
        renamed[new_key] = tensor
    return renamed


def load_checkpoint_weights(model: Any, folder: str | Path) -> int:
    """Copy the weights saved in `folder` into `model` (in place); the number of tensors loaded.
    ModelError naming the folder when any parameter would stay as it was, or any saved key fits
    no parameter: a resume that silently keeps the start weights is the bug this guards."""
    state = to_module_names(model, read_saved_weights(folder))
    result = model.load_state_dict(state, strict=False)
    missing = _untied(model, set(result.missing_keys))
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights not in the checkpoint (e.g. {', '.join(missing[:MAX_LISTED_KEYS])})")
        if unexpected:
            parts.append(f"{len(unexpected)} saved weights fit no parameter "
                         f"(e.g. {', '.join(unexpected[:MAX_LISTED_KEYS])})")
        raise ModelError(f"{folder}: does not match {type(model).__name__}: {'; '.join(parts)}")
    return len(state)


def _untied(model: Any, missing: set[str]) -> list[str]:
    """The missing names that no loaded parameter shares storage with (a tied embedding is saved
    once, under one of its names)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(tensor.data_ptr(), []).append(name)
    return sorted(
        name for names in groups.values() if all(n in missing for n in names)
        for name in names
    )
