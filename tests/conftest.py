"""Shared fixtures: tiny models built once per test session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


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
