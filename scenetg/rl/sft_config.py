"""The ``algo`` switch and the ``sft:`` section of `scenetg train` (`rl.config.TrainConfig`).

``algo: sft`` trains the supervised baseline (`rl.sft`) on the same rows, frames, policy options and
run folder as GRPO. ``sft:`` is passed to TRL's `SFTConfig` as is (its ``__post_init__`` validates
it), except the keys below: ``answer_decimals`` is this project's, and the ones the video collator
decides are refused, naming the key.
"""

from __future__ import annotations

from typing import Any

from scenetg.config_fields import coerce_value
from scenetg.errors import ConfigError
from scenetg.grounding.prompts import ANSWER_DECIMALS

ALGOS = ("grpo", "sft")
"""`scenetg train --algo` / config ``algo``: GRPO (default) or the supervised baseline."""

SFT_OWN_KEYS = {"answer_decimals": {"min": 0, "max": 3}}
"""``sft.`` keys this project reads itself (not TRL's): the target's decimals (`grounding_answer`)."""

SFT_PATH_KEYS = ("questions",)
"""``sft.`` path keys this project reads itself: ``questions``, a JSONL of question rows on the
training videos trained beside the grounding rows (`rl.sft.question_rows`)."""

SFT_REFUSED_KEYS = {
    "output_dir": "set it as output_dir instead",
    "packing": "video batches are not packed (each row carries its own video tensors)",
    "padding_free": "video batches are padded (each row carries its own video tensors)",
    "completion_only_loss": "the loss is always on the answer tokens only (the collator's labels)",
    "assistant_only_loss": "the loss is always on the answer tokens only (the collator's labels)",
    "max_length": "video rows are never truncated (it would cut video tokens); lower sampling.max_frames",
    "dataset_kwargs": "rows are tokenized by the video collator, not by TRL's dataset preparation",
    "remove_unused_columns": "the collator needs the row columns (video_path, duration_s, ...)",
}


def check_sft_section(sft: dict[str, Any]) -> dict[str, Any]:
    """`sft` with the project's keys coerced; ConfigError naming ``sft.KEY`` for a refused key."""
    for key in sft:
        if key in SFT_REFUSED_KEYS:
            raise ConfigError(f"sft.{key}: {SFT_REFUSED_KEYS[key]}")
    for key, meta in SFT_OWN_KEYS.items():
        if key in sft:
            sft[key] = coerce_value(f"sft.{key}", sft[key], int, meta)
    for key in SFT_PATH_KEYS:
        if sft.get(key) is not None:
            sft[key] = coerce_value(f"sft.{key}", sft[key], str)
    if "max_steps" in sft:  # TRL reads 0 or less as "no limit": one epoch, not what was asked
        sft["max_steps"] = coerce_value("sft.max_steps", sft["max_steps"], int, {"min": 1})
    return sft


def answer_decimals(sft: dict[str, Any]) -> int:
    return int(sft.get("answer_decimals", ANSWER_DECIMALS))


def trl_sft_kwargs(sft: dict[str, Any]) -> dict[str, Any]:
    """The ``sft:`` keys that go to TRL's `SFTConfig`."""
    return {k: v for k, v in sft.items() if k not in SFT_OWN_KEYS and k not in SFT_PATH_KEYS}
