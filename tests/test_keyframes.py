"""One keyframe pass per video (scenetg.curate.run.keyframes): the frames the captions pass keeps for
the filter are byte-identical to those the filter decodes itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scenetg.curate.run.keyframes import (
    KeyframeStore,
    caption_groups_keeping_filter_frames,
    clip_image_size_hint,
    filter_times,
)
from scenetg.curate.run.video_stages import _scene_frame_groups
from scenetg.video.seek import DECODE_STATS
from scenetg.video.synthetic import write_synthetic_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kf") / "v.mp4"
    write_synthetic_video(path, [1.2, 2.0, 0.8, 1.5], 25, size=(320, 180), seed=2)
    return path


SCENES = [
    {"start_s": 0.0, "end_s": 1.2}, {"start_s": 1.2, "end_s": 3.2},
    {"start_s": 3.2, "end_s": 4.0}, {"start_s": 4.0, "end_s": 5.5},
]


@pytest.mark.parametrize(("k_captions", "k_filter"), [(4, 4), (4, 3), (2, 5)])
def test_one_pass_gives_both_stages_their_own_frames(video, k_captions, k_filter):
    cap_times = filter_times(SCENES, k_captions)  # the scene keyframes are the same centres
    fil_times = filter_times(SCENES, k_filter)
    fil_flat = [t for ts in fil_times for t in ts]
    DECODE_STATS.reset()
    kept: list[np.ndarray] = []
    shared = list(caption_groups_keeping_filter_frames(video, cap_times, 112, fil_flat, 224, kept))
    assert DECODE_STATS.passes == 1
    captions_alone = list(_scene_frame_groups(video, cap_times, 112))
    filter_alone = [f for _, fs in _scene_frame_groups(video, fil_times, 224) for f in fs]
    assert [p for p, _ in shared] == [p for p, _ in captions_alone] == [0, 1, 2, 3]
    for (_, a), (_, b) in zip(shared, captions_alone, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(kept) == len(filter_alone)
    assert all(np.array_equal(x, y) for x, y in zip(kept, filter_alone, strict=True))
    assert kept[0].shape == (126, 224, 3) and shared[0][1][0].shape == (63, 112, 3)


def test_store_is_keyed_by_video_times_and_size(video, tmp_path):
    store = KeyframeStore(tmp_path / "kf")
    frames = [np.full((4, 6, 3), i, np.uint8) for i in range(3)]
    store.save(video, [0.1, 0.2, 0.3], 224, frames)
    got = store.load(video, [0.1, 0.2, 0.3], 224)
    assert got is not None and all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))
    assert store.load(video, [0.1, 0.2, 0.3], 336) is None
    assert store.load(video, [0.1, 0.2, 0.4], 224) is None
    store.clear()
    assert store.load(video, [0.1, 0.2, 0.3], 224) is None


def test_clip_size_hint_reads_configs_without_weights(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": {"vision_cfg": {"image_size": 336}}})
    )
    assert clip_image_size_hint(str(folder)) == 336
    assert clip_image_size_hint("ViT-B-32:openai") == 224
    assert clip_image_size_hint("hf-hub:org/none") is None
    assert clip_image_size_hint(str(tmp_path / "missing")) is None


@pytest.mark.slow
def test_build_filter_figures_equal_a_filter_that_decodes_itself(tmp_path, tiny_models):
    """Byte-identity with the two-pass build: the stored filter figures equal those computed
    from a fresh decode of the video."""
    from scenetg.cli import main
    from scenetg.curate.run import video_stages as stages
    from scenetg.curate.run.pipeline import Build
    from scenetg.models.clip import load_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "a.mp4", [1.5, 2.0, 1.5], 25, size=(160, 96), seed=4)
    out = tmp_path / "out"
    config = Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml"
    args = ["build", "--videos", str(videos), "--out", str(out), "--config", str(config),
            "--caption-model", str(tiny_models["qwen"]), "--clip-model", str(tiny_models["clip"])]
    assert main(args) == 0
    build = Build.open(out)
    (job,) = build.jobs()
    shots, captions, figures = build.stored_results(job)
    clip = load_clip(str(tiny_models["clip"]), device="cpu")
    DECODE_STATS.reset()
    fresh = stages.run_filter(job.path, shots["scenes"], captions["captions"], clip, build.cfg,
                              video=shots["video"])
    assert DECODE_STATS.passes == 1  # this one did decode
    assert json.dumps(fresh, sort_keys=True) == json.dumps(figures["figures"], sort_keys=True)


@pytest.mark.parametrize(("width", "height", "image_size", "side"), [
    (1280, 720, 224, 399),   # 16:9: 399 x 224, CLIP's short side reached, no enlargement
    (640, 480, 224, 299),    # 4:3
    (1080, 1920, 336, 598),  # portrait, a 336-px CLIP
    (1280, 720, 32, 224),    # a tiny CLIP: never below FILTER_MIN_SIDE
    (0, 0, 224, 448),        # dimensions unknown: enough up to 2:1
])
def test_filter_frames_reach_clips_short_side(width, height, image_size, side):
    from scenetg.curate.run.keyframes import filter_frame_side

    assert filter_frame_side(image_size, {"width": width, "height": height}) == side


def test_filter_decodes_16_9_frames_that_clip_does_not_enlarge(tmp_path):
    """open_clip's preprocess resizes the shorter side to its input size: the filter's frames of
    a 16:9 video have that shorter side (224 x 126 frames were enlarged 1.78x before)."""
    import open_clip

    from scenetg.curate.run import video_stages as stages
    from scenetg.curate.run.keyframes import filter_frame_side

    path = tmp_path / "wide.mp4"
    write_synthetic_video(path, [1.0, 1.0], 10, size=(640, 360))
    scenes = [{"start_s": 0.0, "end_s": 1.0}, {"start_s": 1.0, "end_s": 2.0}]
    side = filter_frame_side(224, {"width": 640, "height": 360})
    frames, counts = stages.filter_frames(path, scenes, 2, side)
    assert counts == [2, 2] and {f.shape for f in frames} == {(224, 399, 3)}
    resize = open_clip.image_transform(224, is_train=False).transforms[0]
    from PIL import Image

    assert Image.fromarray(frames[0]).size == resize(Image.fromarray(frames[0])).size  # no rescale
