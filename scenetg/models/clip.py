"""OpenCLIP encoders for the ambiguity filter: L2-normalised text and image embeddings.

A model is named as a local folder (open_clip's ``local-dir:`` layout: ``open_clip_config.json`` +
weights), an ``arch:pretrained`` pair (``ViT-L-14:openai``) or ``hf-hub:ORG/NAME``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.errors import ModelError
from scenetg.models.qwen import hub_file_problem, hub_offline, resolve_device

CLIP_MODEL_FLAG = "--clip-model"
LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
_HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class _ClipSource:
    """A parsed model name: what to pass to open_clip, and the stable name to record."""

    model_name: str
    pretrained: str | None
    name: str


def _fail(name: str, why: str, flag: str = CLIP_MODEL_FLAG) -> ModelError:
    """One line naming `flag`, the option of the command that was run."""
    return ModelError(
        f"CLIP model {name!r}: {why}; set {flag} (arch:pretrained, hf-hub:ORG/NAME or a folder)"
    )


def _local_source(name: str, folder: Path, flag: str = CLIP_MODEL_FLAG) -> _ClipSource:
    config = folder / "open_clip_config.json"
    if not folder.is_dir():
        raise _fail(name, "no such model folder", flag)
    if not config.is_file():
        raise _fail(name, "folder has no open_clip_config.json", flag)
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(name, f"unreadable open_clip_config.json ({type(exc).__name__})", flag) from exc
    if "model_cfg" not in data:
        raise _fail(name, "open_clip_config.json has no model_cfg", flag)
    if not any(folder.glob(pattern) for pattern in ("*.safetensors", "*.bin", "*.pth")):
        raise _fail(name, "folder has no weights (*.safetensors, *.bin, *.pth)", flag)
    stable = str(data.get("model_name") or folder.resolve().name)
    return _ClipSource(f"{LOCAL_DIR_PREFIX}{folder}", None, stable)


def _resolve(name_or_path: str | Path, flag: str = CLIP_MODEL_FLAG) -> _ClipSource:
    """Parse and check a model name without loading anything (cache lookups or one HEAD request)."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    name = str(name_or_path)
    if name.startswith(LOCAL_DIR_PREFIX):
        return _local_source(name, Path(name[len(LOCAL_DIR_PREFIX) :]).expanduser(), flag)
    if name.startswith(HF_HUB_PREFIX):
        repo = name[len(HF_HUB_PREFIX) :]
        problem = hub_file_problem(repo, ["open_clip_config.json"])
        if problem:
            raise _fail(name, f"not a local folder and {problem}", flag)
        return _ClipSource(name, None, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return _local_source(name, path, flag)
    if ":" not in name:
        if name.startswith((".", "/", "~")) or os.sep in name:
            raise _fail(name, "no such model folder", flag)
        raise _fail(name, "no pretrained weights named (use arch:pretrained, e.g. ViT-L-14:openai)", flag)
    arch, tag = name.split(":", 1)
    arch = arch.replace("/", "-")
    if arch not in open_clip.list_models():
        raise _fail(name, f"unknown OpenCLIP architecture {arch!r}", flag)
    if os.path.isfile(tag):
        return _ClipSource(arch, tag, f"{arch}:{Path(tag).name}")
    cfg = get_pretrained_cfg(arch, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(arch)
        tags = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "") if known else "none"
        raise _fail(name, f"unknown pretrained tag {tag!r} (known: {tags})", flag)
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub:
        repo, filename = os.path.split(hf_hub)  # "org/name/" means open_clip's default file name
        if not filename:
            files = list(_HF_WEIGHTS)
        elif filename.endswith((".bin", ".pth")):
            files = [os.path.splitext(filename)[0] + ".safetensors", filename]
        else:
            files = [filename]
        problem = hub_file_problem(repo, files)
        if problem:
            raise _fail(name, f"weights ({repo}) {problem}", flag)
    else:
        url = cfg.get("url", "")
        cached = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if not cached.is_file() and hub_offline():
            raise _fail(name, f"weights not in ~/.cache/clip and offline ({os.path.basename(url)})", flag)
    return _ClipSource(arch, tag, f"{arch}:{tag}")


def check_clip_available(name_or_path: str | Path, flag: str = CLIP_MODEL_FLAG) -> str:
    """Raise ModelError (one line, naming `flag`) unless the model can be loaded.

    Cheap: parses the name, looks in the local folder or the Hugging Face cache, and only when
    online asks the Hub for one file's metadata. Returns the stable name to record.
    """
    return _resolve(name_or_path, flag).name


class ClipEncoder:
    """An OpenCLIP model with its inference preprocess and tokenizer; outputs are L2-normalised float32."""

    def __init__(
        self,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        name: str,
        device: str,
        batch_size: int = 64,
    ):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        """Stable model name for the Parquet ``clip_model`` column (never an absolute path)."""
        self.device = device
        self.batch_size = batch_size
        self._dim: int | None = getattr(getattr(model, "visual", None), "output_dim", None)
        size = getattr(getattr(model, "visual", None), "image_size", 224)
        self.image_size = int(max(size) if isinstance(size, (tuple, list)) else size)
        """Side of the model's square input, so callers can decode frames no larger than needed."""

    @property
    def dim(self) -> int:
        """Embedding size."""
        if self._dim is None:
            self._dim = int(self.encode_text([""]).shape[1])
        return self._dim

    def _run(self, items: Sequence[Any], batch_size: int | None, encode) -> np.ndarray:
        """`encode(chunk, size)` over `items` in chunks of `size`; every call has the same shape.

        A short last chunk is padded to `size` (rows dropped after), because the kernels behind
        an encode are chosen by shape: on a CPU (MKL) a batch of 1-3 texts and one of 4 or more
        give the same text a different last float32 bit, and cuBLAS picks algorithms by shape
        too. At one fixed shape a row's embedding depends on its own input only, so a video's
        figures do not depend on which videos share its batches (`clip_batches.py`).
        """
        import torch

        size = batch_size or self.batch_size
        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(items), size):
                chunk = items[i : i + size]
                emb = encode(chunk, size)[: len(chunk)].float()
                emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                chunks.append(emb.cpu().numpy())
        return np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)

    def encode_text(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(N, d) embeddings of `texts` with open_clip's own tokenizer."""

        def encode(batch, size):
            tokens = self.tokenizer([*batch, *[""] * (size - len(batch))]).to(self.device)
            return self.model.encode_text(tokens)

        return self._run(list(texts), batch_size, encode)

    def pixels(self, images: Sequence[np.ndarray]) -> Any:
        """open_clip's inference preprocess of RGB uint8 HxWx3 frames: an (N, 3, S, S) float32
        CPU tensor. The CPU half of an image encode, so another thread can run it ahead."""
        import torch
        from PIL import Image

        if len(images) == 0:
            return torch.zeros((0, 3, self.image_size, self.image_size))
        return torch.stack(
            [self.preprocess(Image.fromarray(np.asarray(im, dtype=np.uint8))) for im in images]
        )

    def encode_pixels(self, pixels: Any, batch_size: int | None = None) -> np.ndarray:
        """(N, d) embeddings of preprocessed images (`pixels`)."""
        return self._run(pixels, batch_size, self._encode_pixel_chunk)

    def encode_images(
        self, images: Sequence[np.ndarray], batch_size: int | None = None
    ) -> np.ndarray:
        """(N, d) embeddings of RGB uint8 HxWx3 frames, through open_clip's inference preprocess
        (one chunk at a time, so a long list of frames is never all preprocessed at once)."""
        return self._run(
            list(images), batch_size, lambda chunk, size: self._encode_pixel_chunk(self.pixels(chunk), size)
        )

    def _encode_pixel_chunk(self, pixels: Any, size: int) -> Any:
        import torch

        if len(pixels) < size:  # padding rows: zeros
            pad = pixels.new_zeros((size - len(pixels), *pixels.shape[1:]))
            pixels = torch.cat([pixels, pad])
        return self.model.encode_image(pixels.to(self.device))


def load_clip(
    name_or_path: str | Path, device: str = "auto", batch_size: int = 64, flag: str = CLIP_MODEL_FLAG
) -> ClipEncoder:
    """Load an OpenCLIP model (folder, ``arch:pretrained`` or ``hf-hub:``) as a ClipEncoder in eval mode."""
    import open_clip

    source = _resolve(name_or_path, flag)
    dev = resolve_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            source.model_name, pretrained=source.pretrained, device=dev
        )
        tokenizer = open_clip.get_tokenizer(source.model_name)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(str(name_or_path), f"cannot be loaded ({first})", flag) from exc
    model.eval()
    return ClipEncoder(model, preprocess, tokenizer, source.name, dev, batch_size)
