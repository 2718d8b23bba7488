"""Model loading and inputs: tiny checkpoints through the real Auto classes, time encoding, CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scenetg.errors import ModelError
from scenetg.models.clip import ClipEncoder, check_clip_available, load_clip
from scenetg.models.qwen import (
    batch_video_inputs,
    check_qwen_available,
    load_qwen,
    processor_video_inputs,
    resolve_dtype,
    sampled_fps,
    video_inputs,
    video_metadata,
)
from scenetg.models.tiny import SPECIAL_TOKENS, make_tiny_clip, make_tiny_qwen


def _frames(k: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(k)]


def _centres(start_s: float, end_s: float, k: int) -> list[float]:
    step = (end_s - start_s) / k
    return [start_s + (i + 0.5) * step for i in range(k)]


@pytest.fixture(scope="module")
def qwen(tiny_models):
    return load_qwen(tiny_models["qwen"], dtype="auto", device="cpu")


@pytest.fixture(scope="module")
def clip(tiny_models) -> ClipEncoder:
    return load_clip(tiny_models["clip"], device="cpu")


def test_tiny_qwen_reloads_through_auto_classes(tiny_models):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_models["qwen"]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    cfg = model.config
    assert cfg.text_config.vocab_size == len(tok)
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_config.out_hidden_size == cfg.text_config.hidden_size
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    text = "<think>door opens</think><answer>12.5 - 17.8</answer>"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_chat_template_branches_on_block_type(qwen):
    _, processor = qwen
    # As rows read back through `datasets` look: every block carries every key.
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": None, "text": None, "image": None},
                {"type": "text", "video": None, "text": "Where is the dog?", "image": None},
            ],
        }
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.count("<|video_pad|>") == 1
    assert "<|image_pad|>" not in text
    assert "Where is the dog?" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_tiny_models_are_deterministic(tmp_path):
    a = make_tiny_qwen(tmp_path / "a")
    b = make_tiny_qwen(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = make_tiny_clip(tmp_path / "c")
    d = make_tiny_clip(tmp_path / "d")
    assert (c / "open_clip_model.safetensors").read_bytes() == (
        d / "open_clip_model.safetensors"
    ).read_bytes()


def test_tiny_clip_reloads_through_local_dir(tiny_models):
    import open_clip
    from safetensors.torch import load_file

    path = tiny_models["clip"]
    assert (
        json.loads((path / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"][
            "vocab_size"
        ]
        == 49408
    )
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}")
    saved = load_file(str(path / "open_clip_model.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert isinstance(open_clip.get_tokenizer(f"local-dir:{path}"), open_clip.SimpleTokenizer)


def test_generate_on_8_frame_video(qwen):
    model, processor = qwen
    inputs = video_inputs(processor, _frames(8), _centres(0.0, 4.0, 8), "Describe the scene.")
    assert inputs["video_grid_thw"].tolist() == [
        [4, 4, 4]
    ]  # 8 frames / temporal patch 2; 56x56 / 14
    assert processor.tokenizer.padding_side == "left"
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[
        0
    ]
    assert isinstance(text, str)
    assert out.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.parametrize(
    ("k", "duration_s", "fps", "expected"),
    [(8, 4.0, 2.0, 1.0), (8, 16.0, 0.5, 4.0), (3, 1.5, 2.0, 1.0)],
)
def test_second_per_grid_ts_follows_sampled_fps(qwen, k, duration_s, fps, expected):
    _, processor = qwen
    times = _centres(30.0, 30.0 + duration_s, k)
    assert sampled_fps(times) == pytest.approx(fps)
    assert sampled_fps(times, duration_s) == pytest.approx(fps)
    inputs = video_inputs(processor, _frames(k), times, "Describe.")
    temporal_patch = processor.video_processor.temporal_patch_size
    got = float(inputs["second_per_grid_ts"][0])
    assert got == pytest.approx(temporal_patch / fps)
    assert got == pytest.approx(expected)


def test_without_metadata_the_processor_assumes_24_fps(qwen):
    """The pitfall the helper exists for: frames alone are read as 24 fps."""
    _, processor = qwen
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "x"}]}],
        tokenize=False,
    )
    inputs = processor(
        text=[text], videos=[_frames(8)], do_sample_frames=False, return_tensors="pt"
    )
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(2 / 24)


def test_video_metadata_keeps_absolute_times():
    times = _centres(100.0, 104.0, 8)
    meta = video_metadata(times)
    assert meta.sampled_fps == pytest.approx(2.0)
    assert meta.timestamps == pytest.approx(times)
    one = video_metadata([7.5], duration_s=5.0)
    assert one.sampled_fps == pytest.approx(0.2)


def test_batched_inputs_are_left_padded(qwen):
    from scenetg.models.qwen import batch_video_inputs

    _, processor = qwen
    inputs = batch_video_inputs(
        processor,
        [_frames(8), _frames(2, 64, 48)],
        [_centres(0, 4, 8), _centres(10, 14, 2)],
        ["Describe.", "Describe the scene in one long sentence please."],
    )
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 2
    assert bool(mask[:, -1].all())  # left padding: every row ends with a real token
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([1.0, 4.0])


def test_a_processor_without_video_is_a_model_error_before_any_other_use():
    """A text-only processor (no video processor, no chat template) is named as such, not failed
    on by the chat template or the processor call."""

    class TextOnly:
        video_processor = None

    frames, times = _frames(2), [0.5, 1.5]
    for call in (lambda p: batch_video_inputs(p, [frames], [times], "q"),
                 lambda p: processor_video_inputs(p, ["q"], [frames], [times])):
        with pytest.raises(ModelError, match="^TextOnly has no video processor; this model cannot take video input$"):
            call(TextOnly())


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "cuda") is torch.bfloat16
    assert resolve_dtype("fp16", "cpu") is torch.float16
    with pytest.raises(ModelError):
        resolve_dtype("int3", "cpu")


def test_missing_caption_model_is_a_one_line_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("scenetg-test/no-such-model-anywhere", str(tmp_path / "missing"), str(tmp_path)):
        with pytest.raises(ModelError) as info:
            check_qwen_available(name)
        message = str(info.value)
        assert "--caption-model" in message and "\n" not in message
        assert name in message
    with pytest.raises(ModelError, match="--caption-model"):
        load_qwen("scenetg-test/no-such-model-anywhere")


def test_clip_encoder_shapes_and_normalisation(clip):
    assert clip.name == "scenetg-tiny-clip"
    text = clip.encode_text(["a dog on a sofa", "a red car", "x"], batch_size=2)
    assert text.shape == (3, clip.dim) and text.dtype == np.float32
    assert np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    images = _frames(5, 48, 64) + _frames(2, 120, 90, seed=1)
    emb = clip.encode_images(images, batch_size=3)
    assert emb.shape == (7, clip.dim) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb, clip.encode_images(images, batch_size=7), atol=1e-5)
    assert clip.encode_text([]).shape == (0, clip.dim)
    assert clip.encode_images([]).shape == (0, clip.dim)


def test_clip_accepts_local_dir_scheme(tiny_models, clip):
    other = load_clip(f"local-dir:{tiny_models['clip']}", device="cpu")
    assert other.name == clip.name
    assert np.array_equal(other.encode_text(["a cat"]), clip.encode_text(["a cat"]))


@pytest.mark.parametrize(
    "name",
    [
        "ViT-B-32:no-such-tag",
        "No-Such-Arch:openai",
        "ViT-B-32",
        "/no/such/clip/folder",
        "hf-hub:scenetg-test/no-such-clip",
        "RN50:openai",  # a real tag, but not cached and offline
    ],
)
def test_bad_clip_name_is_a_one_line_model_error(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        check_clip_available(name)
    assert "--clip-model" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError):
        load_clip(name, device="cpu")
