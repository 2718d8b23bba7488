"""Claim 4, ambiguous queries: filtering them makes GRPO training more effective (issue 16).

Data: `scenetg.toy_task`'s videos with one change: every video shows one colour in two scenes
that are not adjacent (`make_ambiguous_spec`; adjacent scenes still differ in luma by >= 40, so
the cuts stay visible). Every scene gets the query a captioner would write for it ("the green
scene"), so the two scenes of the repeated colour get the same query, each annotated with the
scene it was written for: those queries are ambiguous, the rest are not (`scene_queries`).

The project's own filter (`scenetg.curate.stages.ambiguity.filter_queries`, the margin rule of the
build's CLIP filter) runs on toy embeddings: scene = mean RGB of frames decoded from the video at
the scene's keyframes (`sample_times`, as the build picks them), query = the named colour's
palette RGB, both L2-normalised (`filter_split`). GRPO from the shipped toy SFT checkpoint runs on
a filtered set (the kept queries) and on an unfiltered set of the same size drawn from all queries
of the same videos (the natural share of ambiguous queries), same steps and seeds; both are scored
on a held-out split of unambiguous queries, with paired sign tests (`run`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scenetg.toy_task import ToySplit, write_jsonl, write_missing_videos

from .ambiguous_data import (
    filter_quality,
    filter_video,
    scene_embeddings,
    scene_queries,
    split_specs,
)
from .common import (
    CACHE,
    DOCS,
    SHIPPED_SFT,
    ground_ious,
    grpo_run,
    logged_steps,
    paired,
    pooled,
    scores,
)

REGIME = "ambiguous"
CLAIM = "Filtering ambiguous queries makes RL training more effective (claim 4)"
SAMPLING = {"fps": 1.0, "max_frames": 16, "max_side": 64}
"""The toy benchmark's sampling (16 frames at i·D/16, 64 px): what the shipped SFT was trained on."""
REWARDS = {"iou": 1.0, "cendist": 1.0, "format": 0.5}
BETA, BETA_TS = 0.04, 0.0
"""The project's defaults (DESIGN.md): IoU + CenDist + 0.5·format, token-aware KL with β_ts = 0."""
VARIANTS = ("filtered", "unfiltered")


@dataclass(frozen=True)
class Sizes:
    train_videos: int = 160
    heldout_videos: int = 400
    steps: int = 100
    prompts: int = 4
    """Prompts per GRPO step (8 generations each); a set holds steps × prompts queries (one epoch)."""
    seeds: int = 5
    lr: float = 3e-4
    min_margin: float = 0.02
    """`filter.min_margin` of the build (its default, pipelines/build.yaml)."""
    keyframes: int = 4
    data_seed: int = 0

    @property
    def key(self) -> str:
        return (f"d{self.data_seed}_t{self.train_videos}_h{self.heldout_videos}_k{self.keyframes}"
                f"_m{self.min_margin:g}")

    @property
    def run_key(self) -> str:
        return f"{self.key}_g{self.steps}x{self.prompts}_lr{self.lr:g}"


FULL = Sizes()
QUICK = Sizes(train_videos=6, heldout_videos=4, steps=1, prompts=2, seeds=2)
PILOT_LRS = (1e-3, 3e-4)
PILOT_STEPS = 40
"""The learning-rate pilot run before the full runs: GRPO on the filtered set, seed 0, this many
steps at each rate, scored on the held-out split (part of the regime, cached)."""
MARGIN_SWEEP = (0.0, 0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


def prepare_data(sizes: Sizes, root: Path) -> dict:
    """The train videos with all their queries and the filter's figures, the two training sets
    (same size), the held-out split of unambiguous queries; cached (`data.json` written last)."""
    done = root / "data.json"
    if done.is_file():
        info = json.loads(done.read_text())
    else:
        info = _build_data(sizes, root)
        from .common import write_json

        write_json(done, info)
    train_videos = root / "train" / "videos"

    def split(name: str) -> ToySplit:
        jsonl = root / f"{name}.jsonl"
        rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        videos = train_videos if name != "heldout" else root / "heldout" / "videos"
        return ToySplit(jsonl, videos, rows)

    return {**info, "sets": {v: split(v) for v in VARIANTS}, "heldout": split("heldout"),
            "ambiguous_probe": split("ambiguous_probe")}


def _build_data(sizes: Sizes, root: Path) -> dict:
    specs = split_specs("train", sizes.train_videos, sizes.data_seed)
    videos = write_missing_videos(root / "train" / "videos", specs)
    rows, figures, embs = [], [], {}
    for spec in specs:
        q = scene_queries(spec)
        embs[spec.vid] = scene_embeddings(videos / f"{spec.vid}.mp4", spec, sizes.keyframes)
        figures += filter_video(q, embs[spec.vid], sizes.min_margin)
        rows += q
    for r, f in zip(rows, figures, strict=True):
        r.update({k: f[k] for k in ("clip_margin", "clip_rank", "kept", "drop_reason")})
    write_jsonl(root / "all_queries.jsonl", rows)
    sweep = []
    for m in MARGIN_SWEEP:
        dropped = []
        for spec in specs:
            q = [r for r in rows if r["vid"] == spec.vid]
            dropped += [not f["kept"] for f in filter_video(q, embs[spec.vid], m)]
        sweep.append({"min_margin": m, **filter_quality(rows, dropped)})
    amb_margins = [r["clip_margin"] for r in rows if r["ambiguous"]]
    clear_margins = [r["clip_margin"] for r in rows if not r["ambiguous"]]
    size = sizes.steps * sizes.prompts
    kept = [r for r in rows if r["kept"]]
    if len(kept) < size:
        raise ValueError(f"{len(kept)} kept queries for a set of {size}: more train videos needed")
    rng = np.random.default_rng(sizes.data_seed + 1)
    sets = {"filtered": [kept[i] for i in sorted(rng.permutation(len(kept))[:size])],
            "unfiltered": [rows[i] for i in sorted(rng.permutation(len(rows))[:size])]}
    for name, s in sets.items():
        write_jsonl(root / f"{name}.jsonl", s)
    probe = [r for r in rows if r["ambiguous"]][: min(100, len(amb_margins))]
    write_jsonl(root / "ambiguous_probe.jsonl", probe)
    held_specs = split_specs("heldout", sizes.heldout_videos, sizes.data_seed + 10_000)
    write_missing_videos(root / "heldout" / "videos", held_specs)
    hrng = np.random.default_rng(sizes.data_seed + 10_001)
    held = []
    for spec in held_specs:
        clear = [r for r in scene_queries(spec) if not r["ambiguous"]]
        held.append(clear[int(hrng.integers(len(clear)))])
    write_jsonl(root / "heldout.jsonl", held)
    return {
        "sizes": asdict(sizes),
        "train_queries": len(rows),
        "filter": {"min_margin": sizes.min_margin, **filter_quality(rows, [not r["kept"] for r in rows]),
                   "drop_reasons": {k: sum(r["drop_reason"] == k for r in rows)
                                    for k in ("ambiguous", "not_top1")},
                   "ambiguous_margin_max": max(amb_margins),
                   "unambiguous_margin_min": min(clear_margins),
                   "sweep": sweep},
        "set_size": size,
        "ambiguous_share": {n: sum(r["ambiguous"] for r in s) / len(s) for n, s in sets.items()},
        "ambiguous_share_all": len(amb_margins) / len(rows),
        "heldout_queries": len(held),
        "probe_queries": len(probe),
    }


# ---- runs ---------------------------------------------------------------------------------------

def timed(record: Path, fn, *args, **kwargs):
    """Run `fn`; when `record` does not exist yet, store its wall and CPU seconds there (a cached
    stage then keeps the time it took when it ran). Returns ``(fn(*args, **kwargs), {"wall_s", "cpu_s"})``."""
    import time

    from .common import write_json

    fresh = not record.is_file()
    w, c = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    if fresh:
        write_json(record, {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c})
    return value, json.loads(record.read_text())


def probe_start(probe: ToySplit, sizes: Sizes) -> dict:
    """Where the start model's greedy answer to an ambiguous training query lands: on the scene
    the query was written for, on its twin (same colour), or elsewhere (IoU >= 0.5)."""
    from scenetg.eval.predictions import read_predictions
    from scenetg.grounding.iou import temporal_iou

    tag = f"start_probe_{sizes.key}"
    ground_ious(probe, SHIPPED_SFT, tag, SAMPLING, REGIME)
    preds = read_predictions(CACHE / REGIME / "preds" / f"{tag}.jsonl")
    own = twin = 0
    for r in probe.rows:
        p = preds.get(r["qid"])
        own += temporal_iou(p, tuple(r["relevant_windows"][0]), r["duration"]) >= 0.5
        twin += any(temporal_iou(p, tuple(w), r["duration"]) >= 0.5 for w in r["twin_windows"])
    n = len(probe.rows)
    return {"n": n, "annotated_scene": own / n, "twin_scene": twin / n, "neither": (n - own - twin) / n}


def length_ratio(split: ToySplit, tag: str) -> float | None:
    """Mean predicted span length / GT length over the parsed predictions of `tag` (hedging
    between two twins shows as spans longer than one scene)."""
    from scenetg.eval.predictions import read_predictions

    preds = read_predictions(CACHE / REGIME / "preds" / f"{tag}.jsonl")
    vals = [(p[1] - p[0]) / (r["relevant_windows"][0][1] - r["relevant_windows"][0][0])
            for r in split.rows if (p := preds.get(r["qid"])) is not None]
    return float(np.mean(vals)) if vals else None


def lr_pilot(data: dict, start: dict[str, float], sizes: Sizes) -> list[dict]:
    """GRPO on the filtered set (seed 0) for `PILOT_STEPS` at each of `PILOT_LRS`: how the full
    runs' learning rate was chosen (the larger one is kept unless it loses held-out hits)."""
    from .common import window_mean

    out = []
    for lr in PILOT_LRS:
        run_dir = CACHE / REGIME / "pilot" / sizes.key / f"lr{lr:g}"
        grpo_run(SHIPPED_SFT, data["sets"]["filtered"], run_dir, SAMPLING, rewards=REWARDS, beta=BETA,
                 beta_timestamp=BETA_TS, steps=PILOT_STEPS, prompts=sizes.prompts, seed=0, lr=lr)
        ious = ground_ious(data["heldout"], run_dir / "final", f"pilot_{sizes.key}_lr{lr:g}", SAMPLING, REGIME)
        steps = logged_steps(run_dir)
        out.append({"lr": lr, "steps": PILOT_STEPS, "scores": scores(ious), "vs_start": paired(start, ious),
                    "reward_first10": window_mean(steps, "reward", first=10),
                    "reward_last10": window_mean(steps, "reward", last=10),
                    "train_wall_s": float(sum(r.get("step_time", 0.0) for r in steps))})
    return out


def curve(rows: list[dict], key: str, window: int) -> list[tuple[float, float]]:
    """Running mean of `key` over the last `window` logged steps, per step."""
    vals = [(r.get("step", i + 1), r[key]) for i, r in enumerate(rows) if r.get(key) is not None]
    out = []
    for i in range(len(vals)):
        chunk = [v for _, v in vals[max(0, i - window + 1): i + 1]]
        out.append((float(vals[i][0]), float(np.mean(chunk))))
    return out


def shows(pool: dict, a: float, b: float) -> str:
    """yes: the filtered runs gain more held-out hits than they lose (pooled sign test p < 0.05)
    and lead in mean R1@0.5; no: level or behind (no more seeds ahead than behind, or behind in
    the mean); mixed: ahead but not significant."""
    if pool["gained"] > pool["lost"] and pool["p"] < 0.05 and a > b:
        return "yes"
    if pool["seeds_ahead"] <= pool["seeds_behind"] or a <= b:
        return "no"
    return "mixed"


def run(quick: bool = False) -> dict:
    """Everything (cached): data and filter, the start's held-out scores, GRPO on the filtered and
    the unfiltered set × seeds, their held-out scores, paired tests, curves, the doc and its JSON."""
    import torch

    from .common import window_mean, write_json

    torch.set_num_threads(1)
    sizes = QUICK if quick else FULL
    base = CACHE / REGIME
    data = prepare_data(sizes, base / "data" / sizes.key)
    held = data["heldout"]
    start, start_t = timed(base / "timing" / f"start_{sizes.key}.json",
                           ground_ious, held, SHIPPED_SFT, f"start_{sizes.key}", SAMPLING, REGIME)
    probe, probe_t = timed(base / "timing" / f"probe_{sizes.key}.json",
                           probe_start, data["ambiguous_probe"], sizes)
    pilot = [] if quick else lr_pilot(data, start, sizes)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    compute = {"start_eval": start_t, "probe_eval": probe_t, "train": [], "eval": []}
    for seed in range(sizes.seeds):
        for variant in VARIANTS:
            out = base / "runs" / sizes.run_key / f"{variant}_s{seed}"
            _, t_train = timed(out.parent / f"{out.name}.train_time.json", grpo_run,
                               SHIPPED_SFT, data["sets"][variant], out, SAMPLING, rewards=REWARDS,
                               beta=BETA, beta_timestamp=BETA_TS, steps=sizes.steps,
                               prompts=sizes.prompts, seed=seed, lr=sizes.lr)
            tag = f"{sizes.run_key}_{variant}_s{seed}"
            ious, t_eval = timed(base / "timing" / f"eval_{tag}.json",
                                 ground_ious, held, out / "final", tag, SAMPLING, REGIME)
            compute["train"].append(t_train)
            compute["eval"].append(t_eval)
            steps = logged_steps(out)
            runs[variant].append({
                "seed": seed, "scores": scores(ious), "ious": ious, "steps": steps,
                "length_ratio": length_ratio(held, tag),
                "reward_first": window_mean(steps, "reward", first=20),
                "reward_last": window_mean(steps, "reward", last=20),
                "zero_std": window_mean(steps, "frac_reward_zero_std"),
                "zero_std_last": window_mean(steps, "frac_reward_zero_std", last=20),
                "kl_timestamp_last": window_mean(steps, "kl_timestamp", last=20),
                "kl_other_last": window_mean(steps, "kl_other", last=20),
            })
    pairs = [paired(u["ious"], f["ious"]) for u, f in zip(runs["unfiltered"], runs["filtered"], strict=True)]
    vs_start = {v: [paired(start, r["ious"]) for r in runs[v]] for v in VARIANTS}
    results = {
        "regime": REGIME, "claim": CLAIM, "quick": quick, "data": {k: v for k, v in data.items()
                                                                 if k not in ("sets", "heldout", "ambiguous_probe")},
        "settings": {"sampling": SAMPLING, "rewards": REWARDS, "beta": BETA, "beta_timestamp": BETA_TS,
                     "generations": 8, "start": str(SHIPPED_SFT.relative_to(SHIPPED_SFT.parents[2]))},
        "start": scores(start), "start_probe": probe, "lr_pilot": pilot,
        "per_seed": {v: [{k: r[k] for k in r if k not in ("ious", "steps")} for r in runs[v]]
                     for v in VARIANTS},
        "mean": {v: {m: float(np.mean([r["scores"][m] for r in runs[v]])) for m in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")}
                 for v in VARIANTS},
        "sd": {v: {m: float(np.std([r["scores"][m] for r in runs[v]], ddof=1)) if len(runs[v]) > 1 else None
                   for m in ("R1@0.5", "R1@0.7", "mIoU")} for v in VARIANTS},
        "length_ratio_start": length_ratio(held, f"start_{sizes.key}"),
        "length_ratio_mean": {v: float(np.mean([r["length_ratio"] for r in runs[v]])) for v in VARIANTS},
        "paired_filtered_vs_unfiltered": {"per_seed": pairs, "pooled": pooled(pairs)},
        "paired_vs_start": {v: {"per_seed": p, "pooled": pooled(p)} for v, p in vs_start.items()},
        "compute": {**compute, "cpu_s_total": _total(compute, "cpu_s"), "wall_s_total": _total(compute, "wall_s")},
    }
    from .ambiguous_report import write_report

    target = (CACHE / "quick_docs") if quick else DOCS
    write_report(results, runs, target)
    write_json(target / REGIME / "results.json", results)
    return {"regime": REGIME, "claim": CLAIM, "readme_rows": readme_rows(results)}


def _total(compute: dict, key: str) -> float:
    items = [compute["start_eval"], compute["probe_eval"], *compute["train"], *compute["eval"]]
    return float(sum(t[key] for t in items))


def readme_rows(res: dict) -> list[dict]:
    def fmt(p: dict) -> str:
        return f"+{p['gained']} / −{p['lost']}, p={p['p']:.3g}"

    m, pool = res["mean"], res["paired_filtered_vs_unfiltered"]["pooled"]
    # a: the reference (unfiltered), b: the claim's side (filtered); `paired` is b against a
    rows = [{"comparison": "a: GRPO on unfiltered queries, b: on filtered ones (same size, 5 seeds)",
             "metric": "held-out R1@0.5 (unambiguous queries)", "a": round(m["unfiltered"]["R1@0.5"], 3),
             "b": round(m["filtered"]["R1@0.5"], 3), "paired": fmt(pool),
             "shows": shows(pool, m["filtered"]["R1@0.5"], m["unfiltered"]["R1@0.5"])}]
    return rows
