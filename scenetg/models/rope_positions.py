"""Qwen2.5-VL's own M-RoPE positions for the text after a video, under transformers >= 5.3.

Qwen2.5-VL was trained with the positions of its original ``get_rope_index`` (transformers
4.49-5.2, Qwen's repo; vLLM computes the same): a video grid (t, h, w) gets temporal position
``floor(t * second_per_grid_t * tokens_per_second)``, and the text after any vision block starts at
that block's largest position + 1. transformers >= 5.3 restarts that text at the block's start +
max(h, w) (huggingface/transformers#45381), which for a video of several temporal grids lands
inside the video's own temporal positions, and 5.17 also truncates ``second_per_grid_t`` to an
integer before multiplying. The query and the answer then sit where the model never saw them in
training, and transformers' log-probs differ from vLLM's (GRPO's importance ratio between the two).

`install_reference_positions(model)` gives each `Qwen2_5_VLModel` inside `model` an instance
``get_rope_index`` (the class and other models are untouched; both of transformers' callers, the
forward's ``compute_3d_position_ids`` and generation's ``_prepare_position_ids_for_generation``,
look it up on the instance) that is transformers' own loop with the two differences above undone:
same signature, same grouping by ``mm_token_type_ids``, same padding and ``mrope_position_deltas``
(positions' max + 1 - length, which with these positions is where the first generated token goes).
Images are unchanged (their temporal position is the block start, and start + max(h, w) is
already their max + 1). The temporal product is computed as vLLM does it,
``t * (second_per_grid_t * tokens_per_second)`` in float64, so the two agree to the last integer.

`check_rope_index_source` refuses (ModelError) when transformers' code is not the text this
replaces (5.25's, or 5.17's truncating spelling); ``SCENETG_ROPE_POSITIONS=0`` switches it off.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import os
import types
from typing import Any

from scenetg.errors import ModelError, ScenetgError

ENV_SWITCH = "SCENETG_ROPE_POSITIONS"
"""Set to 0 (or false/no/off) to keep transformers' own positions."""

MODULE = "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl"

ROPE_INDEX_SOURCE = {
    # qualified name -> fragments (whitespace ignored) the replacement relies on; a tuple: one of
    # them (5.25's spelling, or 5.17's: the [vllm] extra's transformers)
    "Qwen2_5_VLModel.get_rope_index": (
        "input_ids: torch.LongTensor,\nmm_token_type_ids: torch.IntTensor,\n"
        "image_grid_thw: torch.LongTensor | None = None,\nvideo_grid_thw: torch.LongTensor | None = None,\n"
        "second_per_grid_ts: torch.Tensor | None = None,\nattention_mask: torch.Tensor | None = None,",
        ("time_interval = tokens_per_second * next(second_per_grid_ts)",
         "time_interval = tokens_per_second * int(next(second_per_grid_ts))"),
        "current_pos += max(grid_thw[1], grid_thw[2]) // spatial_merge_size",
        "position_ids[:, batch_idx, attention_mask[batch_idx].bool()] = llm_positions.to(position_ids.device)",
        "mrope_position_deltas.append(llm_positions.max() + 1 - len(current_input_ids))",
    ),
    # the two callers look it up on the instance
    "Qwen2_5_VLModel.compute_3d_position_ids": ("position_ids, rope_deltas = self.get_rope_index(",),
    "Qwen2_5_VLForConditionalGeneration._prepare_position_ids_for_generation": (
        "vision_positions, rope_deltas = self.model.get_rope_index(inputs_tensor, **model_kwargs)",
    ),
}

MARK = "_scenetg_reference_positions"
"""Set on the installed function, so installing twice is a no-op and removal finds it."""


def reference_positions_enabled() -> bool:
    """False when ``SCENETG_ROPE_POSITIONS`` is 0/false/no/off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def _squash(text: str) -> str:
    return "".join(text.split())


def check_rope_index_source() -> None:
    """Raise ModelError unless transformers' Qwen2.5-VL position code is the text replaced here."""
    import transformers

    module = importlib.import_module(MODULE)
    for qualname, fragments in ROPE_INDEX_SOURCE.items():
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        source = _squash(inspect.getsource(obj)) if obj is not None else ""
        for fragment in fragments:
            options = fragment if isinstance(fragment, tuple) else (fragment,)
            if not any(_squash(option) in source for option in options):
                raise ModelError(
                    f"transformers {transformers.__version__}: {qualname} no longer contains "
                    f"{options[0].splitlines()[0]!r}; scenetg's Qwen2.5-VL reference positions were "
                    f"written against transformers 5.25 and 5.17; set {ENV_SWITCH}=0 to run without "
                    "them, or update scenetg/models/rope_positions.py"
                )


def _vision_positions(torch: Any, start: int, grid_thw: Any, merge: int, time_step: float,
                      device: Any) -> Any:
    """(3, t·h·w) positions of one vision block starting at `start`: temporal
    ``floor(t · time_step)`` (vLLM's float64 product), height and width counted from `start`."""
    t, h, w = (int(x) for x in grid_thw)
    h, w = h // merge, w // merge
    temporal = [math.floor(i * time_step) for i in range(t)]  # tiny: one entry per temporal grid
    grid_t = torch.tensor(temporal, dtype=torch.long, device=device)
    T, H, W = torch.meshgrid(grid_t, torch.arange(h, device=device), torch.arange(w, device=device),
                             indexing="ij")
    return torch.stack([T, H, W]).reshape(3, -1) + start


def reference_rope_index(
    self: Any,
    input_ids: Any,
    mm_token_type_ids: Any,
    image_grid_thw: Any = None,
    video_grid_thw: Any = None,
    second_per_grid_ts: Any = None,
    attention_mask: Any = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """`Qwen2_5_VLModel.get_rope_index` with Qwen2.5-VL's reference positions (module docstring):
    ``(position_ids (3, batch, length), mrope_position_deltas (batch, 1))``."""
    import torch  # deferred: pulls torch

    merge = self.config.vision_config.spatial_merge_size
    tokens_per_second = float(self.config.vision_config.tokens_per_second)
    device = input_ids.device
    position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=device)
    grids = {1: iter(image_grid_thw) if image_grid_thw is not None else None,
             2: iter(video_grid_thw) if video_grid_thw is not None else None}
    seconds = iter(second_per_grid_ts) if second_per_grid_ts is not None else itertools.repeat(1.0)
    deltas = []
    for row, ids in enumerate(input_ids):
        types_ = mm_token_type_ids[row]
        if attention_mask is not None:
            keep = attention_mask[row].bool()
            ids, types_ = ids[keep], types_[keep]
        pieces, current = [], 0
        for kind, group in itertools.groupby(types_.tolist()):
            n = len(list(group))
            if kind == 0:  # text counts on
                pieces.append(torch.arange(n, device=device).expand(3, -1) + current)
            else:  # image (1) or video (2); an image has no temporal spacing
                step = tokens_per_second * float(next(seconds)) if kind == 2 else 0.0
                pieces.append(_vision_positions(torch, current, next(grids[kind]), merge, step, device))
            current = int(pieces[-1].max()) + 1  # the reference: after the block's largest position
        positions = torch.cat(pieces, dim=1)
        if attention_mask is not None:
            position_ids[:, row, keep] = positions.to(position_ids.dtype)
        else:
            position_ids[:, row] = positions.to(position_ids.dtype)
        deltas.append(int(positions.max()) + 1 - len(ids))
    return position_ids, torch.tensor(deltas, device=device).unsqueeze(1)


reference_rope_index.__dict__[MARK] = True


CONFIG_KEY = "scenetg_mrope_positions"
"""A checkpoint's config key naming the positions it was trained with: ``qwen`` (the reference,
also when the key is absent: Qwen's own checkpoints) or ``transformers`` (transformers >= 5.3's
own, e.g. the toy SFT checkpoint shipped in `scenetg/demo_assets/toy_sft`, trained before this
fix). A model runs with the positions it was trained with; `save_pretrained` keeps the key, so a
model trained on from such a checkpoint keeps them too."""


def trained_positions(config: Any) -> str:
    """``qwen`` or ``transformers``: the positions a checkpoint with this config was trained with."""
    value = str(getattr(config, CONFIG_KEY, None) or "qwen").strip().lower()
    if value not in ("qwen", "transformers"):
        # not a ModelError: that one means "transformers' code differs" and falls back to stock
        raise ScenetgError(f"config.json {CONFIG_KEY}: expected qwen or transformers, got {value!r}")
    return value


def refuse_stock_positions_on_vllm(model_id_or_path: Any, what: str) -> None:
    """vLLM always numbers positions as Qwen2.5-VL's code does: a local checkpoint marked as
    trained with transformers' own positions (`CONFIG_KEY`) would run on other positions there,
    so it is refused in one line (`what` names the setting)."""
    import json
    from pathlib import Path

    config = Path(str(model_id_or_path)) / "config.json"
    try:
        marked = json.loads(config.read_text(encoding="utf-8")).get(CONFIG_KEY)
    except (OSError, ValueError, AttributeError):
        return
    if str(marked or "qwen").strip().lower() == "transformers":
        raise ScenetgError(
            f"{what}: {model_id_or_path} was trained with transformers' own M-RoPE positions "
            f"(config.json {CONFIG_KEY}: transformers), which vLLM does not implement; use the "
            "transformers backend for it"
        )


def _qwen25_vl_models(model: Any) -> list[Any]:
    module = importlib.import_module(MODULE)
    return [m for m in model.modules() if type(m) is module.Qwen2_5_VLModel]


def install_reference_positions(model: Any) -> int:
    """Give every `Qwen2_5_VLModel` inside `model` (PEFT and accelerate wrappers included) the
    reference positions; returns how many (0 for other architectures, for a checkpoint trained
    with transformers' own positions (`CONFIG_KEY`), or when ``SCENETG_ROPE_POSITIONS=0``). Raises ModelError when transformers' code differs."""
    if not reference_positions_enabled():
        return 0
    targets = [m for m in _qwen25_vl_models(model) if trained_positions(m.config) == "qwen"]
    if targets:
        check_rope_index_source()
    for module in targets:
        if not getattr(module.__dict__.get("get_rope_index"), MARK, False):
            # a bound method in the instance dict: deepcopy (TRL's reference copy) rebinds it
            module.get_rope_index = types.MethodType(reference_rope_index, module)
    return len(targets)


def reference_positions_or_stock(model: Any) -> int:
    """`install_reference_positions`, or when its guard finds other transformers code, one warning
    and transformers' own positions (what `load_qwen` and the trainers run)."""
    import warnings

    try:
        return install_reference_positions(model)
    except ModelError as exc:
        warnings.warn(f"{exc} (using transformers' own M-RoPE positions, which differ from "
                      "Qwen2.5-VL's after a video)", RuntimeWarning, stacklevel=2)
        return 0


def remove_reference_positions(model: Any) -> int:
    """Undo `install_reference_positions` (transformers' own positions again); returns how many."""
    removed = 0
    for module in _qwen25_vl_models(model):
        if getattr(module.__dict__.get("get_rope_index"), MARK, False):
            del module.get_rope_index
            removed += 1
    return removed


def has_reference_positions(model: Any) -> bool:
    """Whether every Qwen2.5-VL model inside `model` uses the reference positions."""
    targets = _qwen25_vl_models(model)
    return bool(targets) and all(
        getattr(m.__dict__.get("get_rope_index"), MARK, False) for m in targets
    )
