"""`scenetg train --algo sft`: the supervised baseline on TRL's `SFTTrainer`, through the same seam
as GRPO and `scenetg ground` (DESIGN.md, RL).

TRL 1.16's vision collator takes images only (``processor(images=...)``): a video row would reach
the model as text. So `VideoSFTCollator` builds each batch itself, the way GRPO's prompts are built:
frames from `sample_video` (`FrameSampling.times`, through a `FrameCache`), the row's chat prompt
rendered with the generation prompt, tensors from `processor_video_inputs` (the real sampled fps,
so ``second_per_grid_ts`` is GRPO's and ground's). The target, `grounding_answer`
(``<think></think><answer>12.0 - 17.5</answer>``, which `format_ok` accepts and `parse_answer`
reads), and the end-of-turn token are tokenized apart from the prompt and appended to it, as a
generated completion follows the prompt; labels are -100 on the prompt, the video and padding.

Rows of a second task on the same videos (``sft.questions``: a JSONL of questions with free-text
answers, `question_rows`) carry their own chat prompt (the question with the video) and ``target``
(the answer text); the collator treats them as it treats grounding rows: loss on the answer and
end-of-turn tokens only, the video in the prompt.

`SFTTrainer` itself is unchanged: its ``compute_loss`` calls ``model(**inputs, fused_lm_head=True)``
with every key of the batch, so ``pixel_values_videos``, ``video_grid_thw``,
``second_per_grid_ts`` and ``mm_token_type_ids`` reach the policy, and the loss is TRL's: the
summed negative log-likelihood of the label tokens over their count in the (accumulated) batch.
`VideoSFTTrainer` only installs the collator and the settings it needs; `check_trl_sft_internals`
fails loudly on a TRL whose code differs where this relies on it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import SFTConfig, SFTTrainer

from scenetg.errors import ConfigError
from scenetg.grounding.prompts import ANSWER_DECIMALS, grounding_answer
from scenetg.grounding.samples import FrameSampling, SampledVideo, sample_video
from scenetg.models.qwen import processor_video_inputs, render_chat, video_messages
from scenetg.rl.config import TrainConfig
from scenetg.rl.resume import FullModelResume
from scenetg.rl.sft_config import trl_sft_kwargs
from scenetg.rl.trainer import check_trl_source
from scenetg.video.lookup import find_video

IGNORE_INDEX = -100
"""Label of a token the loss skips (the prompt, its video and padding)."""

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
"""Per-batch video tensors of the processor that go to the model unchanged."""

SFT_INTERNALS = {
    # SFTTrainer method -> source fragments this module relies on
    "compute_loss": ("outputs = model(**inputs, fused_lm_head=True)",),
    "__init__": ('args.dataset_kwargs.get("skip_prepare_dataset", False)',),
}


def check_trl_sft_internals() -> None:
    """RuntimeError when the installed TRL is not the version whose `SFTTrainer` this was written
    against, or its code differs where the collator relies on it (every batch key to the model)."""
    check_trl_source("SFT trainer", [(SFTTrainer, name, frags) for name, frags in SFT_INTERNALS.items()],
                     "the video collator")


def sft_args(cfg: TrainConfig, device: str) -> SFTConfig:
    """TRL's SFTConfig: our defaults, then ``cfg.sft`` on top; the keys the collator needs last."""
    on_gpu = device.startswith("cuda")
    half = cfg.dtype in ("bf16", "bfloat16") or (cfg.dtype == "auto" and on_gpu)
    defaults: dict[str, Any] = {
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-4 if cfg.lora.enabled else 1e-5,
        "logging_steps": 1,
        "save_steps": 100,
        "report_to": "tensorboard" if importlib.util.find_spec("tensorboard") else "none",
        "bf16": half,
        "use_cpu": not on_gpu,
        "activation_checkpointing": on_gpu,
    }
    sft = trl_sft_kwargs(cfg.sft)
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in sft:  # transformers 5's deprecated alias: our default for `new` would win over it
            sft.setdefault(new, sft.pop(old))
    kwargs = {**defaults, **sft, "output_dir": cfg.output_dir, **COLLATOR_SETTINGS}
    try:
        return SFTConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"sft: {first}") from None


QUESTION_FIELDS = ("qid", "vid", "duration", "question", "answer")
"""Keys of a row of ``sft.questions`` (JSONL): its id, the video id under ``data.video_root``, the
video's duration in seconds, the question text and the answer text the model is taught."""


def question_rows(path: str | Path, video_root: str | Path) -> list[dict]:
    """Training rows of ``sft.questions``: prompt = the question with its video (`video_messages`),
    ``target`` = the answer text. ConfigError naming ``sft.questions`` and the line for a missing
    file, a missing key or a video not under `video_root`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"sft.questions: {path}: no such file")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sft.questions: {path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"sft.questions: {path}:{n}: expected a JSON object")
        missing = [k for k in QUESTION_FIELDS if rec.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"sft.questions: {path}:{n}: no {', '.join(missing)}")
        video = find_video(Path(video_root), str(rec["vid"]))
        if video is None:
            raise ConfigError(f"sft.questions: {path}:{n}: no video {rec['vid']!r} under {video_root}")
        rows.append({"qid": str(rec["qid"]), "prompt": video_messages(str(rec["question"])),
                     "video_path": str(video), "duration_s": float(rec["duration"]),
                     "start_s": None, "end_s": None, "query": str(rec["question"]),
                     "target": str(rec["answer"])})
    return rows


def with_question_rows(rows: list[dict], questions: list[dict]) -> list[dict]:
    """Grounding `rows` then `questions`, every row with the same keys (``datasets`` takes its
    columns from the first row: a key only later rows have would be dropped)."""
    keys = dict.fromkeys([k for r in [*rows, *questions] for k in r])
    return [{k: r.get(k) for k in keys} for r in [*rows, *questions]]


COLLATOR_SETTINGS: dict[str, Any] = {
    "remove_unused_columns": False,  # the collator reads video_path, duration_s, start_s, end_s
    "dataset_kwargs": {"skip_prepare_dataset": True},  # rows are tokenized by the collator
    "max_length": None,  # never truncate: it would cut video tokens
    "packing": False,
    "padding_free": False,
}


class VideoSFTCollator:
    """Grounding rows (``prompt``, ``video_path``, ``duration_s``, ``start_s``, ``end_s``; or a
    ``target`` text) → a
    right-padded batch: the prompt with its video, then the target answer and the end-of-turn
    token; ``labels`` are the answer's and end-of-turn ids, -100 elsewhere."""

    def __init__(
        self,
        processor: Any,
        sampling: FrameSampling,
        frame_cache: Any = None,
        answer_decimals: int = ANSWER_DECIMALS,
    ):
        self.processor, self.sampling, self.frame_cache = processor, sampling, frame_cache
        self.answer_decimals = int(answer_decimals)
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def target(self, row: dict) -> str:
        """The completion the model is taught for `row` (end-of-turn token not included): the
        row's own ``target`` text when it has one (a row of another task on the same video, e.g.
        a question about it), else `grounding_answer` of its span."""
        if row.get("target") is not None:
            return str(row["target"])
        return grounding_answer(row["start_s"], row["end_s"], self.answer_decimals)

    def videos(self, rows: Sequence[dict]) -> list[SampledVideo]:
        """Each row's frames; rows of one video share one decode."""
        seen: dict[tuple[str, float], SampledVideo] = {}
        for row in rows:
            key = (str(row["video_path"]), float(row["duration_s"]))
            if key not in seen:
                seen[key] = sample_video(key[0], key[1], self.sampling, self.frame_cache)
        return [seen[(str(r["video_path"]), float(r["duration_s"]))] for r in rows]

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        videos = self.videos(rows)
        prompts = processor_video_inputs(
            self.processor,
            [render_chat(self.processor, row["prompt"]) for row in rows],
            [v.frames for v in videos],
            [v.times_s for v in videos],
            durations_s=[v.duration_s for v in videos],
            padding_side="right",
        )
        if "pixel_values_videos" not in prompts:
            raise RuntimeError("the processor returned no pixel_values_videos for a video batch")
        eos = self.tokenizer.eos_token
        answers = [
            self.tokenizer(self.target(row) + eos, add_special_tokens=False)["input_ids"] for row in rows
        ]
        prompt_lengths = prompts["attention_mask"].sum(1).tolist()
        width = max(int(n) + len(a) for n, a in zip(prompt_lengths, answers, strict=True))
        pad = self.tokenizer.pad_token_id
        batch = len(rows)
        input_ids = torch.full((batch, width), pad, dtype=prompts["input_ids"].dtype)
        attention = torch.zeros((batch, width), dtype=prompts["attention_mask"].dtype)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        types = torch.zeros((batch, width), dtype=torch.long)
        for i, (n, answer) in enumerate(zip(prompt_lengths, answers, strict=True)):
            n = int(n)
            end = n + len(answer)
            input_ids[i, :n] = prompts["input_ids"][i, :n]
            input_ids[i, n:end] = torch.tensor(answer, dtype=input_ids.dtype)
            attention[i, :end] = 1
            labels[i, n:end] = input_ids[i, n:end]
            if "mm_token_type_ids" in prompts:
                types[i, :n] = prompts["mm_token_type_ids"][i, :n]
        out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        if "mm_token_type_ids" in prompts:  # Qwen2.5-VL builds its 3-D positions from it
            out["mm_token_type_ids"] = types
        out.update({k: prompts[k] for k in VIDEO_KEYS if k in prompts})
        return out


class VideoSFTTrainer(FullModelResume, SFTTrainer):
    """SFT on grounding rows with their videos: TRL's `SFTTrainer` with `VideoSFTCollator` as its
    data collator (frames by `sampling`, through `frame_cache`; times with `answer_decimals`)."""

    def __init__(
        self,
        *args: Any,
        sampling: FrameSampling,
        frame_cache: Any = None,
        answer_decimals: int = ANSWER_DECIMALS,
        **kwargs: Any,
    ):
        check_trl_sft_internals()
        sft_config = kwargs.get("args")
        if not isinstance(sft_config, SFTConfig):
            raise ConfigError("VideoSFTTrainer needs args=SFTConfig(...) (see rl.sft.sft_args)")
        for key, value in COLLATOR_SETTINGS.items():
            if key in ("packing", "padding_free") and getattr(sft_config, key):
                raise ConfigError(f"sft.{key}: not supported with video rows")
            setattr(sft_config, key, value)
        if kwargs.get("data_collator") is not None:
            raise ConfigError("VideoSFTTrainer builds its own data collator (VideoSFTCollator)")
        kwargs["data_collator"] = VideoSFTCollator(
            kwargs["processing_class"], sampling, frame_cache, answer_decimals
        )
        super().__init__(*args, **kwargs)
