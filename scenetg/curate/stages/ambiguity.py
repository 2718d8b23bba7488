"""CLIP ambiguity filter: drop queries that match other scenes of the same video about as well as
their own (DESIGN.md, Stages).

For one video with N scenes, query ``i`` was written for scene ``i``. With L2-normalised text
embeddings ``t_i`` and scene embeddings ``v_j`` (mean of the scene's K frame embeddings,
L2-normalised; `scene_embedding`), one matrix product gives ``S = T @ V.T``, ``s_ij = cos(t_i, v_j)``:

- ``clip_self = s_ii``; ``clip_best_other = max_{j != i} s_ij``;
  ``clip_margin = s_ii - clip_best_other``;
- ``clip_rank = 1 + #{j : s_ij > s_ii}`` (1 = the own scene scores best; a tie does not lower it);
- ``confusers`` = sorted ``j != i`` with ``s_ij >= s_ii - delta`` (i.e. ``s_ii - s_ij <= delta``);
- keep query ``i`` iff ``clip_rank == 1`` (argmax_j s_ij = i) **and** ``clip_margin >= delta``
  (``delta`` = config ``filter.min_margin``).

``drop_reason``: None when kept; ``empty_caption`` when the caption is empty (takes priority;
the figures are still computed); ``not_top1`` when another scene scores higher; ``ambiguous``
when the own scene is top-1 but the margin is below ``delta``; ``single_scene`` when the video has
only one scene.

Single-scene videos: there is no other scene to be confused with, so ``clip_best_other``,
``clip_margin`` are None (undefined, not infinite), ``clip_rank`` is 1 and ``confusers`` empty;
the query is **dropped** with ``single_scene``: the filter cannot vouch for it, and its target is
the whole video (the scene covers ``[0, duration)``), which teaches a grounding model nothing.
It stays in ``audit/`` with its ``clip_self``.

Determinism: the product is computed in float32; every similarity is rounded to
`ROUND_DECIMALS` decimals and all figures (and the keep decision) are derived from the rounded
values in float64, so a BLAS summation-order difference in the last float32 bit almost never
changes the output, and ``clip_margin == round(clip_self - clip_best_other, 6)`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ROUND_DECIMALS = 6
"""Decimals kept for every similarity figure (stored as float64)."""


def scene_embedding(frame_embs: np.ndarray) -> np.ndarray:
    """A scene's visual embedding: the mean of its K frame embeddings ``(K, d)``, L2-normalised.

    Returns a float32 ``(d,)`` vector (all zeros when the mean is zero).
    """
    frames = np.asarray(frame_embs, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise ValueError(f"scene_embedding: expected a (K, d) array with K >= 1, got {frames.shape}")
    mean = frames.mean(axis=0, dtype=np.float32)
    norm = np.float32(np.linalg.norm(mean))
    return mean / norm if norm > 0 else np.zeros_like(mean)


def filter_queries(
    text_emb: np.ndarray,
    scene_emb: np.ndarray,
    min_margin: float,
    empty: Sequence[bool] | None = None,
) -> list[dict[str, Any]]:
    """Filter one video's queries (row ``i`` of ``text_emb`` describes row ``i`` of ``scene_emb``).

    Both inputs are ``(N, d)`` and already L2-normalised. ``empty[i]`` marks an empty caption.
    Returns one dict per query with ``clip_self, clip_best_other, clip_margin, clip_rank,
    confusers, kept, drop_reason`` (Python floats/ints/lists; see the module docstring).
    """
    t = np.asarray(text_emb, dtype=np.float32)
    v = np.asarray(scene_emb, dtype=np.float32)
    if t.ndim != 2 or v.ndim != 2 or t.shape != v.shape:
        raise ValueError(
            f"filter_queries: text_emb and scene_emb must both be (N, d), got {t.shape} and {v.shape}"
        )
    if min_margin < 0:
        raise ValueError(f"filter_queries: min_margin must be >= 0, got {min_margin}")
    n = t.shape[0]
    empties = [False] * n if empty is None else [bool(e) for e in empty]
    if len(empties) != n:
        raise ValueError(f"filter_queries: {len(empties)} empty flags for {n} queries")
    if n == 0:
        return []

    delta = float(min_margin)
    sim = np.round((t @ v.T).astype(np.float64), ROUND_DECIMALS)  # (N, N), one product
    own = np.diag(sim).copy()
    rank = 1 + (sim > own[:, None]).sum(axis=1)
    if n > 1:
        others = sim.copy()
        np.fill_diagonal(others, -np.inf)
        best_other = others.max(axis=1)
        margin = np.round(own - best_other, ROUND_DECIMALS)
        gaps = np.round(own[:, None] - sim, ROUND_DECIMALS)  # s_ii - s_ij
        confuser = (gaps <= delta) & ~np.eye(n, dtype=bool)

    out: list[dict[str, Any]] = []
    for i in range(n):
        if n == 1:
            fig = {"clip_self": float(own[i]), "clip_best_other": None, "clip_margin": None,
                   "clip_rank": 1, "confusers": []}
            reason = "single_scene"
        else:
            fig = {
                "clip_self": float(own[i]),
                "clip_best_other": float(best_other[i]),
                "clip_margin": float(margin[i]),
                "clip_rank": int(rank[i]),
                "confusers": [int(j) for j in np.flatnonzero(confuser[i])],
            }
            if rank[i] > 1:
                reason = "not_top1"
            elif margin[i] < delta:
                reason = "ambiguous"
            else:
                reason = None
        if empties[i]:
            reason = "empty_caption"
        fig["kept"] = reason is None
        fig["drop_reason"] = reason
        out.append(fig)
    return out
