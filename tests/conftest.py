"""Shared fixtures: tiny models built once per test session, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def pytest_collection_modifyitems(config, items):
    """Tests marked `vllm` run real vLLM (`make test-vllm`, in .venv-vllm); where vLLM is not
    installed (`make test`'s .venv) they are skipped with the target that runs them."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="needs vLLM: `make test-vllm` runs it in .venv-vllm")
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.skip(f"test assets not found at {ASSETS}")
    return ASSETS


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny Qwen2.5-VL and a tiny OpenCLIP saved like real checkpoints."""
    from scenetg.models.tiny import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def grounding_set(tmp_path_factory):
    """Two synthetic videos and a Moment-DETR-style JSONL of four queries (training tests)."""
    from scenetg.video.synthetic import write_synthetic_video
    from tests.train_fixtures import QUERIES

    root = tmp_path_factory.mktemp("grounding_set")
    videos = root / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "a.mp4", [2.0, 2.0, 2.0], fps=8, size=(64, 36), seed=1)
    write_synthetic_video(videos / "b.mp4", [3.0, 1.0], fps=8, size=(64, 36), seed=2)
    lines = [
        json.dumps({"qid": q, "vid": v, "duration": d, "query": text, "relevant_windows": [w]})
        for q, v, d, text, w in QUERIES
    ]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root
