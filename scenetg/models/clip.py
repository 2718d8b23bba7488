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


# PIL modes whose ToTensor output is not uint8 scaled by 1/255 ("1" is scaled by 255 first).
_NON_BYTE_MODES = frozenset({"1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class _SplitPreprocess:
    """open_clip's inference preprocess cut where the PIL image becomes a tensor.

    `geometry` (resize, crop, RGB convert: PIL work) runs in `ClipEncoder.pixels`, which keeps
    the result uint8, a quarter of the float32 tensor a prefetched video would hold otherwise;
    ToTensor's scaling and `normalize` run at encode time, as the same ops in the same order.
    """

    geometry: tuple[Any, ...]
    normalize: Any | None
    """The Compose's torchvision ``Normalize``, or None when it has none."""

    def byte_image(self, image: Any) -> Any:
        """(C, S, S) uint8 tensor: torchvision's ``to_tensor`` of the geometry's output before
        its ``.div(255)`` (HWC bytes, permuted to CHW)."""
        import torch
        from PIL import Image

        for step in self.geometry:
            image = step(image)
        if not isinstance(image, Image.Image) or image.mode in _NON_BYTE_MODES:
            got = image.mode if isinstance(image, Image.Image) else type(image).__name__
            raise ModelError(f"CLIP preprocess gave a {got} image where 8-bit PIL was expected")
        arr = np.array(image, np.uint8, copy=True).reshape(image.size[1], image.size[0], -1)
        return torch.from_numpy(arr).permute(2, 0, 1)

    def to_float(self, pixels: Any) -> Any:
        """What the rest of the Compose makes of a batch of `byte_image`s, on their device.

        ToTensor's ``img.to(default float).div(255)``, then Normalize's ``sub_(mean).div_(std)``
        (its own object called on the batch, so the same ops). The 255 is a tensor on the
        device, because CUDA turns a division by a CPU scalar into a product with its reciprocal,
        which can be one bit off the CPU's division.
        """
        import torch

        x = pixels.to(dtype=torch.get_default_dtype())
        x = x.div(torch.tensor(255, dtype=x.dtype, device=x.device))
        return self.normalize(x) if self.normalize is not None else x


def _split_preprocess(preprocess: Any) -> _SplitPreprocess | None:
    """Split a Compose of PIL steps, one ToTensor and an optional Normalize (open_clip's
    inference preprocess); None for any other shape, which then runs whole, as float32."""
    from PIL import Image
    from torchvision.transforms import Compose, Normalize, ToTensor

    tensor_types: tuple[type, ...] = (ToTensor,)
    try:
        from open_clip.transform import MaybeToTensor

        tensor_types += (MaybeToTensor,)
    except ImportError:  # older open_clip: plain ToTensor
        pass
    if type(preprocess) is not Compose:
        return None
    steps = list(preprocess.transforms)
    at = [i for i, step in enumerate(steps) if isinstance(step, ToTensor)]
    if len(at) != 1 or type(steps[at[0]]) not in tensor_types:
        return None
    rest = steps[at[0] + 1 :]
    if len(rest) > 1 or (rest and type(rest[0]) is not Normalize):
        return None
    split = _SplitPreprocess(tuple(steps[: at[0]]), rest[0] if rest else None)
    try:  # the geometry must yield an 8-bit PIL image from an RGB frame
        split.byte_image(Image.new("RGB", (8, 8)))
    except Exception:
        return None
    return split


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
        self._split = _split_preprocess(preprocess)
        """`pixels` stays uint8 when set; None: an unrecognised preprocess, run whole (float32)."""

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
        """The CPU half of an image encode of RGB uint8 HxWx3 frames, so another thread can run
        it ahead: an (N, 3, S, S) CPU tensor of open_clip's preprocess up to its ToTensor, uint8
        (the scaling and Normalize run in `encode_pixels`). float32, the whole preprocess, when
        the preprocess is not one this can split."""
        import torch
        from PIL import Image

        split = self._split
        if len(images) == 0:
            dtype = torch.uint8 if split is not None else torch.get_default_dtype()
            return torch.zeros((0, 3, self.image_size, self.image_size), dtype=dtype)
        pils = (Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images)
        if split is None:
            return torch.stack([self.preprocess(im) for im in pils])
        first = split.byte_image(next(pils))
        out = torch.empty((len(images), *first.shape), dtype=torch.uint8)
        out[0] = first
        for i, im in enumerate(pils, 1):  # filled in place: no second copy of the batch
            out[i] = split.byte_image(im)
        return out

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

    def _model_input(self, pixels: Any) -> Any:
        """`pixels` on the model's device as open_clip's whole preprocess would give them."""
        import torch

        pixels = pixels.to(self.device)
        if pixels.dtype == torch.uint8 and self._split is not None:
            return self._split.to_float(pixels)
        return pixels

    def _encode_pixel_chunk(self, pixels: Any, size: int) -> Any:
        import torch

        x = self._model_input(pixels)
        if len(x) < size:  # padding rows: zeros of the model's input
            x = torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))])
        return self.model.encode_image(x)


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
