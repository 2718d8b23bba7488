"""The ambiguous-queries regime's data (claim 4; `toy_claims.ambiguous` runs it): toy videos with
one colour in two non-adjacent scenes, a query per scene, and the project's margin filter on toy
colour embeddings (scene = mean RGB of decoded keyframes, query = the named colour's RGB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scenetg.toy_task import MIN_LUMA_STEP, PALETTE, ToyVideo, cell_layout, luma, query_text


def make_ambiguous_spec(rng: np.random.Generator, vid: str) -> ToyVideo:
    """A toy video layout (duration, cuts on the 8 cells, as `toy_task.make_video_spec`) whose
    n scenes show n − 1 colours: one colour twice, in two scenes at least one scene apart; every
    two adjacent scenes differ in luma by >= `MIN_LUMA_STEP`."""
    duration, bounds = cell_layout(rng)
    n = len(bounds) - 1
    names = list(PALETTE)
    pairs = [(i, j) for i in range(n) for j in range(i + 2, n)]
    while True:  # rejection: the repeat not adjacent, adjacent lumas far apart
        distinct = [names[k] for k in rng.permutation(len(names))[: n - 1]]
        i, j = pairs[int(rng.integers(len(pairs)))]
        pick = distinct[:j] + [distinct[i]] + distinct[j:]
        steps = [abs(luma(PALETTE[a]) - luma(PALETTE[b])) for a, b in zip(pick, pick[1:], strict=False)]
        if min(steps) >= MIN_LUMA_STEP:
            return ToyVideo(vid, duration, tuple(pick), bounds)


def scene_queries(spec: ToyVideo) -> list[dict]:
    """One query per scene, as a captioner writes one per scene: Moment-DETR rows with the scene
    index, `ambiguous` (its colour is also another scene's) and `twins` (those other scenes)."""
    rows = []
    for k, colour in enumerate(spec.colours):
        twins = [j for j, c in enumerate(spec.colours) if c == colour and j != k]
        rows.append({"qid": f"{spec.vid}_s{k}", "vid": spec.vid, "duration": float(spec.duration_s),
                     "query": query_text(colour),
                     "relevant_windows": [[float(spec.bounds_s[k]), float(spec.bounds_s[k + 1])]],
                     "scene_index": k, "colour": colour, "ambiguous": bool(twins),
                     "twin_windows": [[float(spec.bounds_s[j]), float(spec.bounds_s[j + 1])]
                                      for j in twins]})
    return rows


def split_specs(name: str, n_videos: int, seed: int) -> list[ToyVideo]:
    rng = np.random.default_rng(seed)
    return [make_ambiguous_spec(rng, f"{name}{v:05d}") for v in range(n_videos)]


def scene_embeddings(video: Path, spec: ToyVideo, keyframes: int) -> np.ndarray:
    """(n, 3): each scene's mean decoded RGB over its keyframes, L2-normalised per frame and then
    per scene (`ambiguity.scene_embedding`)."""
    from scenetg.curate.stages.ambiguity import scene_embedding
    from scenetg.video.frames import read_frames_at, sample_times

    times = [t for k in range(len(spec.colours))
             for t in sample_times(spec.bounds_s[k], spec.bounds_s[k + 1], keyframes)]
    frames = read_frames_at(video, times)
    means = np.asarray([f.reshape(-1, 3).mean(axis=0) for f in frames], dtype=np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return np.stack([scene_embedding(means[k * keyframes:(k + 1) * keyframes])
                     for k in range(len(spec.colours))])


def query_embeddings(rows: list[dict]) -> np.ndarray:
    """(n, 3): the named colour's palette RGB, L2-normalised."""
    t = np.asarray([PALETTE[r["colour"]] for r in rows], dtype=np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def filter_video(rows: list[dict], scene_emb: np.ndarray, min_margin: float) -> list[dict]:
    """`filter_queries` on one video's queries (row i written for scene i)."""
    from scenetg.curate.stages.ambiguity import filter_queries

    return filter_queries(query_embeddings(rows), scene_emb, min_margin)


def filter_quality(rows: list[dict], dropped: list[bool]) -> dict:
    """Precision and recall of the drops against the generator's ambiguous queries."""
    amb = np.asarray([r["ambiguous"] for r in rows])
    drop = np.asarray(dropped)
    tp = int((amb & drop).sum())
    return {"queries": len(rows), "ambiguous": int(amb.sum()), "dropped": int(drop.sum()),
            "dropped_ambiguous": tp, "dropped_unambiguous": int((drop & ~amb).sum()),
            "precision": tp / int(drop.sum()) if drop.any() else None,
            "recall": tp / int(amb.sum()) if amb.any() else None}
