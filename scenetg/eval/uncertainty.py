"""Uncertainty of grounding scores: bootstrap intervals over queries and a paired sign test.

- `bootstrap_ci(values, resamples, seed, level)`: percentile bootstrap of column means. Each of
  `resamples` replicates draws N queries with replacement (NumPy's PCG64 seeded with `seed`), so
  the same per-query values and seed give the same interval on every machine.
- `paired_comparison(hits_a, hits_b)`: two methods scored on the same queries. Only the
  discordant queries tell them apart (`gained`: B hits where A misses; `lost`: the reverse);
  under "no difference" each is a fair coin, so the exact two-sided McNemar (sign) test is
  `p = min(1, 2 · P[Bin(g + l, 1/2) <= min(g, l)])` (1 when no query is discordant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
_CHUNK_ELEMENTS = 1 << 22  # indices drawn per block: bounded memory whatever N


def bootstrap_ci(
    values: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> np.ndarray:
    """(C, 2) percentile intervals of the means of the columns of `values` (N, C) (a 1-D array
    is one column). N == 0 gives NaN bounds."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, c = x.shape
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    if n == 0:
        return np.full((c, 2), np.nan)
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, c))
    per_block = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, per_block):
        b = min(per_block, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        # how often each query is drawn in each resample, then one matrix product: about
        # twice as fast as gathering the values (and ~30x a (b, n, C) fancy index)
        idx += (np.arange(b, dtype=np.int64) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
        means[start : start + b] = (counts @ x) / n
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(means, [tail, 100.0 - tail], axis=0).T


def sign_test_p(gained: int, lost: int) -> float:
    """Exact two-sided sign (McNemar) test p-value for `gained` vs `lost` discordant queries."""
    n, k = gained + lost, min(gained, lost)
    if n == 0:
        return 1.0
    # log P[X = i] = log C(n, i) - n log 2, summed in log space (n may be 10^5)
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2.0)
        for i in range(k + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2.0 * tail)


def paired_comparison(
    hits_a: np.ndarray, hits_b: np.ndarray
) -> dict:
    """`{n, gained, lost, p}` for two (N,) boolean hit vectors over the same queries."""
    a = np.asarray(hits_a, dtype=bool)
    b = np.asarray(hits_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired hit vectors must cover the same queries")
    gained = int(np.count_nonzero(b & ~a))
    lost = int(np.count_nonzero(a & ~b))
    return {"n": int(a.size), "gained": gained, "lost": lost, "p": sign_test_p(gained, lost)}


def interval_dict(names: Sequence[str], values: np.ndarray, resamples: int, seed: int) -> dict:
    """`{name: [low, high]}` (percentages as given in `values`; None bounds when N == 0)."""
    bounds = bootstrap_ci(values, resamples, seed)
    return {
        name: None if math.isnan(lo) else [float(lo), float(hi)]
        for name, (lo, hi) in zip(names, bounds, strict=True)
    }
