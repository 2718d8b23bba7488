"""CLIP filter calls on a lent GPU: one call per video (the old code) vs calls across videos.

A real-size OpenCLIP ViT-L-14 (random weights: no download; fp32 as `load_clip` runs it) and a
corpus of short clips held in memory (3-5 scenes x 8 frames of 398x224, as the filter decodes
them; no video decode). Two checks:

- bits: does a row's embedding depend on its batch-mates? (a) calls shaped to their items (the
  old code: a 2-scene video's texts as a batch of 2), (b) every call padded to `batch_size`
  (today's `ClipEncoder`). And do the uint8 `pixels` (scaled and normalised on the model's
  device) give the embeddings of open_clip's whole float32 preprocess run on the CPU?
- speed: images/s and CLIP calls per video, old (per video, its own shape, preprocess on the
  main thread) vs today (calls of `batch_size` across videos, preprocess in a prefetch thread).

    python benchmarks/gpu_clip_batches.py --out result.json            # on the GPU machine
    python benchmarks/gpu_clip_batches.py --out r.json --tiny --videos 8  # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _encoder(tiny: bool, batch_size: int):
    import open_clip

    from scenetg.models.clip import ClipEncoder, load_clip

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if tiny:
        from scenetg.models.tiny import make_tiny_clip

        clip = load_clip(make_tiny_clip(Path(tempfile.mkdtemp()) / "clip"), device=device)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14", pretrained=None, device=device)
        model.eval()
        clip = ClipEncoder(model, preprocess, open_clip.get_tokenizer("ViT-L-14"), "ViT-L-14:random", device)
    clip.batch_size = batch_size
    return clip


def _corpus(n_videos: int):
    rng = np.random.default_rng(0)
    videos = []
    for v in range(n_videos):
        n = 3 + v % 3
        base = rng.integers(0, 255, (n, 1, 224, 398, 3), dtype=np.uint8)
        frames = [base[i, 0] for i in range(n) for _ in range(8)]
        texts = [f"scene {i} of clip {v}: a person opens a door and walks away" for i in range(n)]
        videos.append((frames, texts))
    return videos


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _bits(clip) -> dict:
    texts = [f"caption {i} of a short clip" for i in range(40)]
    corpus = _corpus(2)
    frames = corpus[0][0][:16] + corpus[1][0][:16]
    out = {}
    for label, shaped in (("shaped_to_call", True), ("fixed_shape", False)):
        def size(n, shaped=shaped):
            return n if shaped else None
        t_alone = clip.encode_text(texts[:2], size(2))
        t_mixed = clip.encode_text(texts, size(40))[:2]
        i_alone = clip.encode_images(frames[:8], size(8))
        i_mixed = clip.encode_images(frames, size(32))[:8]
        out[label] = {"texts_equal": bool(np.array_equal(t_alone, t_mixed)),
                      "images_equal": bool(np.array_equal(i_alone, i_mixed)),
                      "max_abs_diff": float(max(np.abs(t_alone - t_mixed).max(), np.abs(i_alone - i_mixed).max()))}
    from scenetg.models.clip import ClipEncoder

    whole = ClipEncoder(clip.model, lambda im: clip.preprocess(im), clip.tokenizer, clip.name, clip.device,
                        clip.batch_size)  # not a Compose: the whole preprocess, float32, on the CPU
    byte, full = clip.pixels(frames), whole.pixels(frames)
    split, ref = clip.encode_pixels(byte), whole.encode_pixels(full)
    out["uint8_pixels"] = {"dtype": str(byte.dtype), "bytes_vs_float32": round(byte.nbytes / full.nbytes, 3),
                           "images_equal": bool(np.array_equal(split, ref)),
                           "max_abs_diff": float(np.abs(split - ref).max())}
    return out


def _old(clip, videos) -> tuple[float, int]:
    calls = 0
    _sync()
    t = time.perf_counter()
    for frames, texts in videos:
        clip.encode_images(frames, len(frames))
        clip.encode_text(texts, len(texts))
        calls += 2
    _sync()
    return time.perf_counter() - t, calls


def _across(clip, videos) -> tuple[float, int]:
    from scenetg.prefetch import Prefetch

    size, calls = clip.batch_size, 0
    images: list = []
    texts: list[str] = []
    _sync()
    t = time.perf_counter()
    with Prefetch(((clip.pixels(f), tx) for f, tx in videos), 4) as items:
        for pixels, tx in items:
            images.extend(pixels)
            texts.extend(tx)
            while len(images) >= size:
                clip.encode_pixels(torch.stack(images[:size]))
                images, calls = images[size:], calls + 1
            while len(texts) >= size:
                clip.encode_text(texts[:size])
                texts, calls = texts[size:], calls + 1
    if images:
        clip.encode_pixels(torch.stack(images))
        calls += 1
    if texts:
        clip.encode_text(texts)
        calls += 1
    _sync()
    return time.perf_counter() - t, calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--videos", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--tiny", action="store_true", help="the tiny CLIP (a CPU smoke run)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as a build runs it
    clip = _encoder(args.tiny, args.batch_size)
    videos = _corpus(args.videos)
    n_images = sum(len(f) for f, _ in videos)
    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "model": clip.name, "torch": torch.__version__, "videos": args.videos,
              "images": n_images, "batch_size": args.batch_size, "bits": _bits(clip)}
    _old(clip, videos[:4])
    _across(clip, videos[:40])  # warm both paths' shapes
    for label, fn in (("old", _old), ("across", _across)):
        wall, calls = min((fn(clip, videos) for _ in range(2)), key=lambda r: r[0])
        result[label] = {"images_per_s": round(n_images / wall, 1), "calls_per_video": round(calls / args.videos, 3)}
    result["across_over_old"] = round(result["across"]["images_per_s"] / result["old"]["images_per_s"], 2)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
