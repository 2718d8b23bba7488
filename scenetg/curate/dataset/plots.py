"""PNG plots for `scenetg inspect`: scene length, query length, CLIP margin, kept ratio per video.

matplotlib with the Agg backend (no display needed); PNG metadata without the software version,
so a re-run on the same data writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scenetg.atomic_files import save_png  # noqa: F401  (re-exported: the plots module's one writer)

PLOTS = {
    "scene_length.png": "Scene length",
    "query_length.png": "Query length",
    "clip_margin.png": "CLIP margin",
    "kept_ratio.png": "Kept ratio per video",
}
"""File name -> title, in the order the report shows them."""

MAX_BARS = 60
"""Above this many videos the kept ratio is a histogram instead of one bar per video."""

KEPT, DROPPED = "#2a8a2a", "#c33333"


def _hist_kept_dropped(ax, values: pd.Series, kept: pd.Series, bins) -> None:
    data = [values[kept].to_numpy(float), values[~kept].to_numpy(float)]
    ax.hist(data, bins=bins, stacked=True, color=[KEPT, DROPPED],
            label=[f"kept ({len(data[0])})", f"dropped ({len(data[1])})"])
    ax.set_ylabel("queries")
    ax.legend(fontsize=8)


def _bins(values: pd.Series, n: int = 20) -> np.ndarray:
    finite = values.dropna().to_numpy(float)
    if finite.size == 0:
        return np.linspace(0.0, 1.0, n + 1)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def write_plots(audit: pd.DataFrame, per_video: pd.DataFrame, folder: Path) -> list[Path]:
    """Write the four PNGs of `PLOTS` into `folder`; returns their paths in that order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    kept = audit["kept"].astype(bool)
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    scene_len = audit["end_s"] - audit["start_s"]
    _hist_kept_dropped(ax, scene_len, kept, _bins(scene_len))
    ax.set_xlabel("scene length (s)")
    ax.set_title("Scene (moment) length")
    paths.append(save_png(fig, folder / "scene_length.png"))

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    words = audit["query"].fillna("").str.split().str.len()
    _hist_kept_dropped(ax, words, kept, np.arange(-0.5, max(int(words.max() or 0), 1) + 1.5, 1.0))
    ax.set_xlabel("query length (words)")
    ax.set_title("Query length")
    paths.append(save_png(fig, folder / "query_length.png"))

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    has_margin = audit["clip_margin"].notna()
    margin = audit.loc[has_margin, "clip_margin"]
    _hist_kept_dropped(ax, margin, kept[has_margin], _bins(margin))
    ax.axvline(0.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("CLIP margin: own scene minus best other scene")
    n_none = int((~has_margin).sum())
    ax.set_title("CLIP margin" + (f" ({n_none} single-scene queries have none)" if n_none else ""))
    paths.append(save_png(fig, folder / "clip_margin.png"))

    fig, ax = plt.subplots(figsize=(6.4, 3.6 if len(per_video) > MAX_BARS else max(2.4, 0.28 * len(per_video) + 1)), dpi=100)
    if len(per_video) > MAX_BARS:
        ax.hist(per_video["kept_ratio"].to_numpy(float), bins=np.linspace(0, 1, 21), color=KEPT)
        ax.set_xlabel("kept queries / generated queries")
        ax.set_ylabel("videos")
    else:
        rows = per_video.iloc[::-1]
        ax.barh(rows["video_id"].astype(str), rows["kept_ratio"].to_numpy(float), color=KEPT)
        ax.set_xlim(0, 1)
        ax.set_xlabel("kept queries / generated queries")
        ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Kept ratio per video")
    paths.append(save_png(fig, folder / "kept_ratio.png"))
    return paths
