"""Tiny, randomly-initialised models of the real classes, saved like real checkpoints.

Tests and ``make demo`` load them through exactly the code paths used for real checkpoints
(``AutoProcessor`` / ``AutoModelForImageTextToText``, open_clip's ``local-dir:`` scheme), offline.
Everything is seeded, so a second build gives the same weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from scenetg.atomic_files import honour_umask_tree

TINY_QWEN_SEED = 0
TINY_CLIP_SEED = 0
TINY_CLIP_NAME = "scenetg-tiny-clip"

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL's chat template, except that each content block is dispatched on its `type` only:
# rows read back through `datasets` carry every key (`video: None`, ...) on every block.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or content['type'] == 'image_url' %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS_SENTENCES = (
    "A man in a red jacket walks a brown dog along a snowy street at night.",
    "A woman in a blue dress pours coffee into a white cup in a bright kitchen.",
    "Two children play football on a green field under a cloudy sky.",
    "A close-up of hands chopping onions and carrots on a wooden board.",
    "The camera pans across a crowded market with stalls of fruit and vegetables.",
    "A person opens the refrigerator, takes out a bottle of milk and closes the door.",
    "A grey cat sleeps on a sofa next to a yellow pillow.",
    "A car drives through a tunnel with orange lights on both walls.",
    "A group of people sit around a table and laugh while eating dinner.",
    "A dark scene with a single lamp lighting a desk covered in papers.",
    "Someone is holding a phone and typing a message near a window.",
    "The screen shows a title card with white text on a black background.",
    "A cyclist rides past a row of trees in autumn with falling leaves.",
    "A chef in a white hat stirs a pot of soup on a stove.",
    "A boat sails on a calm lake at sunset with mountains behind it.",
    "The person puts the book on the shelf and turns off the light.",
    "Find the moment when the person opens the door.",
    "When does the man pick up the cup? Give the start and end time in seconds.",
    "These frames come from one scene of a longer video.",
    "Write one sentence describing what is visible in this scene.",
    "Describe only what is seen. Answer with the sentence only.",
    "The people, objects, actions, setting and colours that make it different.",
    "You are a helpful assistant.",
    "<think>The query matches the scene where the door opens.</think><answer>12.5 - 17.8</answer>",
    "<think>The cup is lifted near the start.</think><answer>0.0 - 4.2</answer>",
    "<think>The event happens late in the video.</think><answer>01:05 - 01:12</answer>",
    "<answer>3.0 to 9.5</answer> <answer>00:00:12 - 00:00:20</answer>",
    "user assistant system video image picture frame second seconds minute time start end",
)


def _corpus() -> list[str]:
    """The tokenizer's training text: captioning/grounding sentences plus digits and times."""
    lines = list(_CORPUS_SENTENCES)
    lines += [" ".join(str(i) for i in range(100))]
    lines += [f"{i}.{j}" for i in range(0, 60, 7) for j in range(10)]
    lines += [f"{m:02d}:{s:02d}" for m in range(0, 10) for s in range(0, 60, 13)]
    lines += [
        f"<answer>{a}.{b} - {a + 5}.{9 - b}</answer>" for a in range(0, 50, 5) for b in range(10)
    ]
    return lines


def _train_tokenizer(vocab_size: int = 640):
    """Train a byte-level BPE with Qwen2's normaliser and pre-tokeniser; return (vocab, merges)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    merges = [
        tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]
    ]
    return vocab, merges


def _build_tokenizer():
    """A Qwen2Tokenizer over the locally trained BPE (eos `<|im_end|>`, pad `<|endoftext|>`)."""
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _train_tokenizer()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the save progress bar and open_clip's "initialized randomly" warning: both expected."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    drop = _DropRandomInitWarning()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)
        if bars:
            hf_logging.enable_progress_bar()


VLLM_HEAD_DIM = 64
"""vLLM's CPU attention refuses head_dim 16 (the default tiny model's); 64 runs on it."""


def make_tiny_qwen(out_dir: str | Path, vllm_compatible: bool = False) -> Path:
    """Build and save a tiny Qwen2.5-VL (model, tokenizer, processor, chat template) in `out_dir`.

    `vllm_compatible`: text head_dim 64 (hidden 128, 2 heads, 1 KV head, mrope_section [8, 12, 12])
    so vLLM's CPU build runs it too; same tokenizer, processor and vision tower otherwise."""
    from transformers import GenerationConfig
    from transformers.models.qwen2_5_vl import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    # Small pixel budgets: the default video minimum (128*28*28) would upscale tiny frames.
    patch, merge = 14, 2
    factor = patch * merge
    image_processor = Qwen2VLImageProcessor(
        min_pixels=4 * factor * factor,
        max_pixels=16 * factor * factor,
        patch_size=patch,
        merge_size=merge,
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=4 * factor * factor,
        max_pixels=16 * factor * factor,
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
        cap_pixels_per_frame=True,
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )

    if vllm_compatible:
        hidden, heads, kv_heads, mrope = 2 * VLLM_HEAD_DIM, 2, 1, [8, 12, 12]
    else:
        hidden, heads, kv_heads, mrope = 64, 4, 2, [2, 3, 3]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "max_position_embeddings": 4096,
            "max_window_layers": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": mrope,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": patch,
            "spatial_merge_size": merge,
            "temporal_patch_size": 2,
            "window_size": 2 * factor,
            "fullatt_block_indexes": [1],
            "out_hidden_size": hidden,
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_QWEN_SEED)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    with _quiet():
        model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
    honour_umask_tree(out)  # safetensors writes through a 0600 temp file
    return out


def _tiny_clip_model_cfg() -> dict:
    """An OpenCLIP ViT config small enough to build in milliseconds (~1.8M parameters)."""
    return {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }


def make_tiny_clip(out_dir: str | Path) -> Path:
    """Build and save a tiny OpenCLIP model as a ``local-dir:`` folder in `out_dir`.

    The folder holds ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``, as
    ``open_clip.push_to_hf_hub`` writes it) and ``open_clip_model.safetensors``.
    """
    import open_clip
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = _tiny_clip_model_cfg()
    with tempfile.TemporaryDirectory() as tmp:
        # Registered only to create the model; local-dir: reads the config written below.
        arch_file = Path(tmp) / f"{TINY_CLIP_NAME}.json"
        arch_file.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(arch_file)
        with torch.random.fork_rng(devices=[]), _quiet():
            torch.manual_seed(TINY_CLIP_SEED)
            model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    preprocess_cfg = {"mean": list(model.visual.image_mean), "std": list(model.visual.image_std)}
    for key in ("interpolation", "resize_mode"):
        if key in getattr(model.visual, "preprocess_cfg", {}):
            preprocess_cfg[key] = model.visual.preprocess_cfg[key]
    config = {
        "model_name": TINY_CLIP_NAME,
        "model_cfg": model_cfg,
        "preprocess_cfg": preprocess_cfg,
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    honour_umask_tree(out)
    return out


def make_tiny_models(out_dir: str | Path) -> dict[str, Path]:
    """Build (or reuse, when already built) the tiny Qwen2.5-VL and OpenCLIP under `out_dir`."""
    out = Path(out_dir)
    paths = {"qwen": out / "qwen", "clip": out / "clip"}
    if (
        not (paths["qwen"] / "config.json").is_file()
        or not (paths["qwen"] / "model.safetensors").is_file()
    ):
        make_tiny_qwen(paths["qwen"])
    if not (paths["clip"] / "open_clip_model.safetensors").is_file():
        make_tiny_clip(paths["clip"])
    return paths
