"""The toy benchmark's stages, each cached under .cache/toy_grounding/ (keyed by seed and sizes):
data (SFT training, held-out and GRPO splits) -> SFT checkpoint -> GRPO variants from it, on the
GRPO split -> held-out predictions and metrics.

`python -m toy_grounding.pipeline sft` (from benchmarks/) runs the first two stages alone, so the
long SFT can run in the background before the rest.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "toy_grounding"


@dataclass(frozen=True)
class Sizes:
    train_videos: int = 1500
    per_video: int = 2
    heldout_videos: int = 300
    sft_steps: int = 4000
    sft_more_steps: int = 8500
    """A second cosine cycle (warm restart, same lr) of this many steps from the `sft_steps`
    checkpoint: the 4,000-step start was at chance, and video use appears late (DESIGN.md)."""
    grpo_videos: int = 800
    grpo_per_video: int = 2
    """GRPO samples its prompts from a split of its own: fresh videos (another seed) that neither
    the SFT trained on nor the held-out split holds. 800 × 2 = 1,600 prompts = one epoch of
    `grpo_steps` × `grpo_prompts`: no prompt is seen twice."""
    grpo_steps: int = 400
    grpo_prompts: int = 4
    """Prompts per GRPO step (each with 8 generations)."""
    data_seed: int = 0
    sft_seed: int = 0

    @property
    def data_key(self) -> str:
        return f"data_s{self.data_seed}_{self.train_videos}x{self.per_video}_h{self.heldout_videos}"

    @property
    def sft_key(self) -> str:
        more = f"_then{self.sft_more_steps}" if self.sft_more_steps else ""
        return f"sft_{self.data_key}_steps{self.sft_steps}_s{self.sft_seed}{more}_trl"

    @property
    def grpo_key(self) -> str:
        """The GRPO split's folder under the data folder (its sizes and seed: changing them
        builds a new split rather than reading a stale one)."""
        return f"grpo_s{grpo_seed(self)}_{self.grpo_videos}x{self.grpo_per_video}"

    @property
    def grpo_run_key(self) -> str:
        return f"{self.sft_key}_{self.grpo_key}_g{self.grpo_steps}x{self.grpo_prompts}"


QUICK = Sizes(train_videos=24, per_video=2, heldout_videos=12, sft_steps=4, sft_more_steps=2,
              grpo_videos=4, grpo_steps=2, grpo_prompts=2)
"""A smoke run of every stage (both SFT cycles, GRPO on its own split) in a minute or two."""


@dataclass(frozen=True)
class Variant:
    name: str
    rewards: dict
    beta: float
    beta_timestamp: float


BETA = 0.04
GRPO_LR = 3e-4
VARIANTS = (
    Variant("iou+cendist, β_ts=β", {"iou": 1.0, "cendist": 1.0, "format": 0.5}, BETA, BETA),
    Variant("iou only, β_ts=β", {"iou": 1.0, "cendist": 0.0, "format": 0.5}, BETA, BETA),
    Variant("iou+cendist, β_ts=0", {"iou": 1.0, "cendist": 1.0, "format": 0.5}, BETA, 0.0),
)


def slug(name: str) -> str:
    return (name.replace("β_ts=β", "bts_eq_b").replace("β_ts=0", "bts0").replace("+", "_")
            .replace(", ", "__").replace(" ", "_"))


def prepare_data(sizes: Sizes):
    """The SFT's training split, the held-out split and GRPO's own split (three seeds)."""
    from scenetg.toy_task import make_split

    root = CACHE / sizes.data_key
    train = make_split(root, "train", sizes.train_videos, sizes.per_video, sizes.data_seed)
    held = make_split(root, "heldout", sizes.heldout_videos, 1, heldout_seed(sizes))
    grpo = make_split(root / sizes.grpo_key, "grpo", sizes.grpo_videos, sizes.grpo_per_video,
                      grpo_seed(sizes))
    return train, held, grpo


def heldout_seed(sizes: Sizes) -> int:
    return sizes.data_seed + 10_000


def grpo_seed(sizes: Sizes) -> int:
    return sizes.data_seed + 20_000


def split_overlap(sizes: Sizes) -> dict:
    """How fresh GRPO's split is: its video ids against the other splits' (none shared: the
    names differ), and how many of its videos happen to repeat a layout (duration, cuts,
    colours) of an SFT training or held-out video, and of its queries the very same question."""
    from scenetg.toy_task import split_specs

    def layouts(name, n, per, seed):
        return {(s.duration_s, s.bounds_s, s.colours): set(cs) for s, cs in split_specs(name, n, per, seed)}

    def vids(name, n, per, seed):
        return {s.vid for s, _ in split_specs(name, n, per, seed)}

    args = {"train": ("train", sizes.train_videos, sizes.per_video, sizes.data_seed),
            "heldout": ("heldout", sizes.heldout_videos, 1, heldout_seed(sizes))}
    grpo_args = ("grpo", sizes.grpo_videos, sizes.grpo_per_video, grpo_seed(sizes))
    grpo = list(split_specs(*grpo_args))
    out = {"grpo_videos": len(grpo), "grpo_queries": sum(len(cs) for _, cs in grpo)}
    for key, a in args.items():
        other = layouts(*a)
        same = [(s, cs) for s, cs in grpo if (s.duration_s, s.bounds_s, s.colours) in other]
        out[f"shared_video_ids_{key}"] = len(vids(*grpo_args) & vids(*a))
        out[f"same_layout_videos_{key}"] = len(same)
        out[f"same_query_{key}"] = sum(len(set(cs) & other[(s.duration_s, s.bounds_s, s.colours)])
                                       for s, cs in same)
    return out


def heldout_scenes(sizes: Sizes) -> dict[str, list[tuple[int, int]]]:
    """Every scene span of each held-out video (replayed from the seed), for the diagnostics."""
    from scenetg.toy_task import split_specs

    specs = split_specs("heldout", sizes.heldout_videos, 1, heldout_seed(sizes))
    return {spec.vid: [spec.span(c) for c in spec.colours] for spec, _ in specs}


def random_scene_expectation(held, scenes: dict) -> dict:
    """Expected scores of answering a uniformly random scene of the video with exact boundaries:
    scenes are disjoint, so IoU is 1 for the named scene and 0 otherwise (R1@m = mIoU = E[1/n])."""
    value = sum(1 / len(scenes[r["vid"]]) for r in held.rows) / len(held.rows)
    return {"R1@0.5": value, "R1@0.7": value, "mIoU": value, "invalid": 0, "n": len(held.rows),
            "distinct_answers": None, "any_scene_exact": 1.0}


def frame_cache():
    from scenetg.video.frame_cache import FrameCache

    return FrameCache(CACHE / "frames")


def sft_checkpoint(sizes: Sizes, train) -> Path:
    from scenetg.models.tiny import make_tiny_qwen

    from .sft import train_sft

    out = CACHE / sizes.sft_key
    if (out / "sft_log.json").is_file():
        return out
    frames = CACHE / "frames"
    if sizes.sft_more_steps:  # warm restart from the first cycle's checkpoint (itself cached)
        first = sft_checkpoint(replace(sizes, sft_more_steps=0), train)
        return train_sft(first, out, train, sizes.sft_more_steps, seed=sizes.sft_seed + 1,
                         prior=json.loads((first / "sft_log.json").read_text()), frame_cache=frames)
    base = make_tiny_qwen(CACHE / "tiny_base")
    return train_sft(base, out, train, sizes.sft_steps, seed=sizes.sft_seed, frame_cache=frames)


def publish_sft(sft_dir: Path) -> Path:
    """Point .cache/toy_grounding/sft at `sft_dir`: a stable path a demo can start training from."""
    link = CACHE / "sft"
    if link.is_symlink() or not link.exists():
        tmp = CACHE / "sft.tmp-link"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(sft_dir.name)
        tmp.replace(link)
    return link


def grpo_run_dir(sizes: Sizes, variant: Variant, seed: int) -> Path:
    return CACHE / "grpo" / sizes.grpo_run_key / f"{slug(variant.name)}_s{seed}"


def grpo_done(run_dir: Path) -> bool:
    return (run_dir / "final" / "config.json").is_file()


def grpo_run(sizes: Sizes, prompts, sft_dir: Path, variant: Variant, seed: int) -> Path:
    """One GRPO run from the SFT checkpoint on the split `prompts` (GRPO's own); its run folder
    (final/, metrics.jsonl), cached."""
    from scenetg.rl.config import train_config_from_dict
    from scenetg.rl.train import train as grpo_train

    from .sft import SAMPLING

    out = grpo_run_dir(sizes, variant, seed)
    if grpo_done(out):
        return out
    cfg = train_config_from_dict({
        "model": str(sft_dir), "output_dir": str(out), "device": "cpu", "dtype": "float32",
        "freeze_vision": False, "frame_cache": str(CACHE / "frames"),
        "data": {"dataset": str(prompts.jsonl), "video_root": str(prompts.videos), "split": None},
        "sampling": {"fps": SAMPLING.fps, "max_frames": SAMPLING.max_frames, "max_side": SAMPLING.max_side},
        "rewards": variant.rewards, "lora": {"enabled": False},
        "kl": {"beta": variant.beta, "beta_timestamp": variant.beta_timestamp},
        "grpo": {"num_generations": 8, "per_device_train_batch_size": 8 * sizes.grpo_prompts,
                 "max_completion_length": 24, "max_steps": sizes.grpo_steps, "learning_rate": GRPO_LR,
                 "lr_scheduler_type": "constant", "temperature": 1.0, "save_strategy": "no",
                 "report_to": "none", "seed": seed, "data_seed": seed, "logging_steps": 1},
    })
    grpo_train(cfg, overwrite=True)  # a run without its final/ is one that did not finish
    return out


def evaluate(held, method: str, model, tag: str, scenes: dict, limit: int | None = None) -> dict:
    """Ground the held-out split with `method` (model/center/clip) and score it (cached JSONL).
    ``any_scene_exact``: the share of answers that are exactly one of the video's scenes (named
    or not): whether the model reads the cuts from the frames, apart from reading the colour."""
    from scenetg.eval.grounding import ground
    from scenetg.eval.metrics import compute_metrics
    from scenetg.eval.predictions import read_predictions
    from scenetg.grounding.loaders import load_annotations

    from .sft import SAMPLING

    records, _ = load_annotations(held.jsonl, videos_dir=held.videos)
    out = CACHE / "preds" / f"{tag}.jsonl"
    ground(records, held.videos, out, method=method, model=model, fps=SAMPLING.fps,
           max_frames=SAMPLING.max_frames, max_side=SAMPLING.max_side, device="cpu",
           dtype="float32", batch_size=16, max_new_tokens=24, limit=limit)
    preds = read_predictions(out)
    m = compute_metrics(records[:limit] if limit else records, preds)
    answers = {tuple(p) for p in preds.values() if p is not None}
    vid_of = {r["qid"]: r["vid"] for r in held.rows}
    exact = [p is not None and tuple(round(x) for x in p) in scenes[vid_of[q]]
             and all(float(x).is_integer() for x in p) for q, p in preds.items()]
    return {"R1@0.5": m["R1@0.5"] / 100, "R1@0.7": m["R1@0.7"] / 100, "mIoU": m["mIoU"] / 100,
            "invalid": m["invalid"], "n": m["n"], "distinct_answers": len(answers),
            "any_scene_exact": sum(exact) / max(1, len(exact))}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # 2 cores shared with other agents: one thread stalls least
    sizes = Sizes()
    if sys.argv[1:] == ["sft"]:
        tr, ho, gr = prepare_data(sizes)
        print(json.dumps({"sizes": asdict(sizes), "train": len(tr.rows), "heldout": len(ho.rows),
                          "grpo": len(gr.rows)}))
        print(sft_checkpoint(sizes, tr))
