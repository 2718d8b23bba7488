"""The CLIP filter batched across videos (scenetg.curate.run.clip_batches): full calls over short
clips, figures equal to the per-video path's, per-video resume, decode in the prefetch thread;
preprocessed frames held as uint8 with open_clip's own embeddings."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scenetg.config import load_build_config
from scenetg.models import clip as clip_module
from scenetg.models.clip import ClipEncoder, load_clip
from scenetg.video.synthetic import write_synthetic_video

DEMO = Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml"


def test_a_clip_embedding_does_not_depend_on_its_batch_mates(tiny_models):
    clip = load_clip(tiny_models["clip"], device="cpu", batch_size=8)
    texts = ["a man opens a door", "x", "a dog runs in the park", "two cars", "rain", "a cat"]
    alone = np.concatenate([clip.encode_text([t]) for t in texts])
    # Batches of 2 and of 6 (and rows at other positions) give every text the same bits: without
    # one fixed call shape, MKL gives batches of 1-3 and of 4+ different last bits.
    assert np.array_equal(clip.encode_text(texts[:2]), alone[:2])
    assert np.array_equal(clip.encode_text(texts), alone)
    assert np.array_equal(clip.encode_text(texts[3:] + texts[:3])[3:], alone[:3])
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 64, 3), dtype=np.uint8) for _ in range(6)]
    single = np.concatenate([clip.encode_images([f]) for f in frames])
    assert np.array_equal(clip.encode_images(frames), single)


def _varied_frames(n: int) -> list[np.ndarray]:
    """Frames of several shapes, so the preprocess resizes, crops and pads nothing the same way."""
    rng = np.random.default_rng(3)
    shapes = [(90, 160, 3), (120, 90, 3), (40, 64, 3), (33, 33, 3)]
    return [rng.integers(0, 256, shapes[i % len(shapes)], dtype=np.uint8) for i in range(n)]


def _open_clip_preprocess(preprocess, frames) -> torch.Tensor:
    return torch.stack([preprocess(Image.fromarray(f)) for f in frames])


def _open_clip_embeddings(model, pixels: torch.Tensor) -> np.ndarray:
    """open_clip's encode_image of a whole batch, L2-normalised as ClipEncoder does."""
    with torch.inference_mode():
        emb = model.encode_image(pixels).float()
        return (emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()


def test_pixels_hold_uint8_a_quarter_of_open_clips_float32_preprocess(tiny_models):
    clip = load_clip(tiny_models["clip"], device="cpu")
    frames = _varied_frames(6)
    pixels = clip.pixels(frames)
    full = _open_clip_preprocess(clip.preprocess, frames)
    side = clip.image_size
    assert pixels.dtype == torch.uint8 and full.dtype == torch.float32
    assert pixels.shape == full.shape == (6, 3, side, side)
    assert pixels.nbytes * 4 == full.nbytes  # what a prefetched video holds
    empty = clip.pixels([])
    assert empty.dtype == torch.uint8 and empty.shape == (0, 3, side, side)


def test_uint8_pixels_give_open_clips_own_embeddings_bit_for_bit(tiny_models):
    frames = _varied_frames(7)
    clip = load_clip(tiny_models["clip"], device="cpu", batch_size=len(frames))
    expected = _open_clip_embeddings(clip.model, _open_clip_preprocess(clip.preprocess, frames))
    assert np.array_equal(clip.encode_pixels(clip.pixels(frames)), expected)
    assert np.array_equal(clip.encode_images(frames), expected)
    # In padded chunks too, the same bits as the float32 path (the whole preprocess per frame).
    clip.batch_size = 3
    whole = ClipEncoder(clip.model, lambda im: clip.preprocess(im), clip.tokenizer, clip.name, "cpu", 3)
    assert whole.pixels(frames).dtype == torch.float32
    assert np.array_equal(clip.encode_images(frames), whole.encode_images(frames))
    assert np.array_equal(clip.encode_pixels(clip.pixels(frames)), whole.encode_pixels(whole.pixels(frames)))


def _flipped_after_normalize(preprocess):
    from torchvision.transforms import Compose, Lambda

    return Compose([*preprocess.transforms, Lambda(lambda t: t.flip(-1))])


def _no_to_tensor(preprocess):
    from torchvision.transforms import Compose, ConvertImageDtype, PILToTensor

    *geometry, _, normalize = preprocess.transforms
    return Compose([*geometry, PILToTensor(), ConvertImageDtype(torch.float32), normalize])


@pytest.mark.parametrize("unrecognised", [_flipped_after_normalize, _no_to_tensor])
def test_an_unrecognised_preprocess_runs_whole_as_float32(tiny_models, unrecognised):
    clip = load_clip(tiny_models["clip"], device="cpu", batch_size=4)
    custom = unrecognised(clip.preprocess)
    other = ClipEncoder(clip.model, custom, clip.tokenizer, clip.name, "cpu", 4)
    frames = _varied_frames(4)
    pixels = other.pixels(frames)
    assert pixels.dtype == torch.float32
    assert torch.equal(pixels, _open_clip_preprocess(custom, frames))
    expected = _open_clip_embeddings(clip.model, _open_clip_preprocess(custom, frames))
    assert np.array_equal(other.encode_images(frames), expected)
    assert np.array_equal(other.encode_pixels(pixels), expected)
    assert other.pixels([]).shape == (0, 3, clip.image_size, clip.image_size)


class _Captioner:
    model_name = "fake-captioner"

    def batch_size(self, scene) -> int:
        return 3

    def caption_scenes(self, scenes):
        return [f"scene at {s.times_s[0]:.2f} s" for s in scenes]


class _Calls:
    """Counts ClipEncoder image and text calls (items per call); raises Ctrl-C on image call
    `interrupt_on`."""

    def __init__(self, monkeypatch, interrupt_on: int | None = None):
        self.images: list[int] = []
        self.texts: list[int] = []
        calls = self

        def counted(real, log, interrupt=None):
            def call(self, items, batch_size=None):
                log.append(len(items))
                if len(log) == interrupt:
                    raise KeyboardInterrupt
                return real(self, items, batch_size)
            return call

        for name in ("encode_images", "encode_pixels"):  # per-video path / cross-video path
            monkeypatch.setattr(ClipEncoder, name, counted(getattr(ClipEncoder, name), calls.images, interrupt_on))
        monkeypatch.setattr(ClipEncoder, "encode_text", counted(ClipEncoder.encode_text, calls.texts))


@pytest.fixture()
def clips(tmp_path, tiny_models, monkeypatch):
    from scenetg.curate.stages import captions

    monkeypatch.setattr(captions, "make_caption_backend", lambda cfg: _Captioner())
    videos = tmp_path / "videos"
    videos.mkdir()
    for i, durations in enumerate([[2.0, 1.5], [1.5, 2.0], [2.0, 2.0, 1.5], [2.0, 2.0]]):
        write_synthetic_video(videos / f"v{i}.mp4", durations, 24.0, size=(160, 96), seed=i)
    return videos


def _config(tiny_models, clip_batch: int):
    return load_build_config(DEMO, {
        "captions.model": str(tiny_models["qwen"]), "filter.clip_model": str(tiny_models["clip"]),
        "filter.batch_size": clip_batch,
    })


def _parquet_bytes(out: Path) -> list[bytes]:
    files = sorted((out / "audit").rglob("*.parquet")) + sorted((out / "data").rglob("*.parquet"))
    assert files
    return [p.read_bytes() for p in files]


def _n_scenes(out: Path) -> list[int]:
    import json

    return [len(json.loads(p.read_text())["result"]["scenes"])
            for p in sorted((out / "work").glob("*/shots.json"))]


@pytest.mark.slow
def test_clip_batches_span_videos_and_equal_the_per_video_path(tmp_path, tiny_models, clips, monkeypatch):
    from scenetg.curate.run.pipeline import Build, build
    from scenetg.curate.run.workdir import discover_videos

    cfg = _config(tiny_models, 12)
    calls = _Calls(monkeypatch)
    build(clips, tmp_path / "cross", cfg)
    scenes = _n_scenes(tmp_path / "cross")
    frames = 4 * sum(scenes)  # demo config: 4 filter frames per scene
    # Full calls of 12 images and 12 texts across videos of 2-3 scenes (8-12 frames each).
    assert sum(calls.images) == frames and calls.images[:-1] == [12] * (len(calls.images) - 1)
    assert sum(calls.texts) == sum(scenes) and len(calls.texts) < len(scenes)
    assert len(calls.images) < len(scenes)

    # The per-video path (as Ray workers run it): one encode per video's frames and texts.
    per_video = Build(tmp_path / "per_video", cfg, clips)
    per_video.init_manifest(discover_videos(clips, cfg.extensions, lambda m: None), resume=False)
    for job in per_video.jobs():
        per_video.process_video(job)
    per_video.export()
    assert _parquet_bytes(tmp_path / "cross") == _parquet_bytes(tmp_path / "per_video")


@pytest.mark.slow
def test_ctrl_c_mid_filter_resumes_per_video_and_finishes_the_same(tmp_path, tiny_models, clips, monkeypatch):
    from scenetg.curate.run.pipeline import build

    cfg = _config(tiny_models, 4)
    _Calls(monkeypatch)
    build(clips, tmp_path / "whole", cfg)

    _Calls(monkeypatch, interrupt_on=6)
    with pytest.raises(KeyboardInterrupt):
        build(clips, tmp_path / "cut", cfg)
    finished = sorted(p.parent.name for p in (tmp_path / "cut" / "work").glob("*/filter.json"))
    assert 0 < len(finished) < 4  # the videos whose figures were written before the kill

    resumed = _Calls(monkeypatch)
    build(clips, tmp_path / "cut", cfg, resume=True)
    # Only the unfinished videos are encoded again.
    assert sum(resumed.images) < 4 * sum(_n_scenes(tmp_path / "whole"))
    assert _parquet_bytes(tmp_path / "cut") == _parquet_bytes(tmp_path / "whole")


@pytest.mark.slow
def test_filter_stage_alone_decodes_and_preprocesses_in_the_prefetch_thread(tmp_path, tiny_models, clips, monkeypatch):
    import shutil

    from scenetg.curate.run import video_stages as stages
    from scenetg.curate.run.pipeline import build, run_stage

    cfg = _config(tiny_models, 12)
    build(clips, tmp_path / "whole", cfg)
    out = tmp_path / "staged"
    run_stage(out, "shots", cfg, videos_dir=clips, resume=False)
    run_stage(out, "captions", cfg)
    for folder in (out / "work").glob("*/keyframes"):  # so the filter must decode
        shutil.rmtree(folder)

    threads: list[str] = []
    real = stages._scene_frame_groups

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    def preprocessing(self, images):
        threads.append(threading.current_thread().name)
        return real_pixels(self, images)

    real_pixels = ClipEncoder.pixels
    monkeypatch.setattr(stages, "_scene_frame_groups", recording)
    monkeypatch.setattr(ClipEncoder, "pixels", preprocessing)
    calls = _Calls(monkeypatch)
    run_stage(out, "filter", cfg).export()
    # One decode and one preprocess per video, none on the main thread.
    assert threads == ["scenetg-prefetch"] * 8
    assert len(calls.images) < 4 and calls.images[0] == 12
    assert _parquet_bytes(out) == _parquet_bytes(tmp_path / "whole")


@pytest.mark.slow
def test_uint8_prefetch_writes_the_bytes_of_the_float32_path(tmp_path, tiny_models, clips, monkeypatch):
    from scenetg.curate.run.pipeline import build

    cfg = _config(tiny_models, 12)
    held: list[torch.dtype] = []
    real_pixels = ClipEncoder.pixels

    def recording(self, images):
        out = real_pixels(self, images)
        held.append(out.dtype)
        return out

    monkeypatch.setattr(ClipEncoder, "pixels", recording)
    build(clips, tmp_path / "uint8", cfg)
    assert held and set(held) == {torch.uint8}  # what each prefetched video holds
    held.clear()
    monkeypatch.setattr(clip_module, "_split_preprocess", lambda preprocess: None)  # the float32 path
    build(clips, tmp_path / "float32", cfg)
    assert held and set(held) == {torch.float32}
    assert _parquet_bytes(tmp_path / "uint8") == _parquet_bytes(tmp_path / "float32")
