"""Scoring protocols: how each benchmark's official script turns predictions into R1/mIoU (and,
where it names them, R@k over ranked windows).

Every script computes IoU the same way, in span form `inter / (max(ends) - min(starts))` with
`inter = max(0, min(ends) - max(starts))`, and takes a query's best-matching GT window. They
differ in these conventions, which a `Protocol` names:

- `strict`: R1@m counts IoU > m (True) or IoU >= m (False).
- `clip_gt`: GT windows clipped to the video before scoring: "both" (start to 0 and end to D),
  "end" (end to D only) or "none".
- `clip_pred`: predictions clipped to [0, D] before scoring.
- `denominator`: "annotations" (every annotation record counts; a missing prediction scores 0) or
  "predictions" (the mean runs over the annotation records that have a prediction line; a null or
  unparsable prediction still counts, as 0).
- `float32`: IoUs computed (and compared with the thresholds) in float32, as the PyTorch scripts
  (MMN, MAD's VLG-Net) do; float64 otherwise. An IoU on a threshold can land on either side.
- `recall_ks`, `recall_thresholds`: the R@k table the benchmark reports (`R{k}@{m}`: % of queries
  with a window of IoU >= m (> m when strict) among their first k ranked windows); empty: none.
- `keep_no_text`: annotation queries with no text are scored (when predicted) instead of skipped
  by the loader (Ego4D-NLQ's script scores every language query it is given a prediction for).
- `by_format`: a benchmark whose loaders clip GT differently per dataset (2D-TAN) names the
  concrete preset for each annotation format (`for_format`).

No protocol drops a query for its GT window: a zero-length or reversed window stays in the
denominator and scores IoU 0 (what each script's formula gives; where a script's 0/0 would be NaN
we count 0). Where a benchmark's own data loader drops such queries (2D-TAN, MMN) we keep them and
the load report counts them, so the difference is visible rather than silent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scenetg.errors import ScenetgError

GT_CLIP_MODES = ("both", "end", "none")
DENOMINATORS = ("annotations", "predictions")


@dataclass(frozen=True)
class Protocol:
    """One benchmark's scoring conventions (see the module docstring); `source` cites the file."""

    name: str
    strict: bool
    clip_gt: str
    clip_pred: bool
    denominator: str
    source: str
    float32: bool = False
    recall_ks: tuple[int, ...] = ()
    recall_thresholds: tuple[float, ...] = ()
    keep_no_text: bool = False
    by_format: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.clip_gt not in GT_CLIP_MODES:
            raise ScenetgError(f"protocol {self.name}: clip_gt must be one of {GT_CLIP_MODES}")
        if self.denominator not in DENOMINATORS:
            raise ScenetgError(f"protocol {self.name}: denominator must be one of {DENOMINATORS}")

    def describe(self) -> dict:
        """The conventions as a JSON-ready dict (written next to the metrics)."""
        out = {
            "name": self.name,
            "threshold": ">" if self.strict else ">=",
            "clip_gt": self.clip_gt,
            "clip_pred": self.clip_pred,
            "denominator": self.denominator,
            "source": self.source,
            "iou_dtype": "float32" if self.float32 else "float64",
        }
        if self.recall_ks:
            out["recall_ks"] = list(self.recall_ks)
            out["recall_thresholds"] = list(self.recall_thresholds)
        if self.keep_no_text:
            out["keep_no_text"] = True
        return out

    def for_format(self, fmt: str, raw_starts_below_zero: int = 0) -> Protocol:
        """The concrete preset for annotations of format `fmt` (this one unless it clips per
        dataset). A format the benchmark's loaders do not tell apart (a JSONL file may hold
        Charades or TACoS) is refused only when the rules would score it differently, i.e. when
        `raw_starts_below_zero` GT windows start before 0."""
        if not self.by_format:
            return self
        table = dict(self.by_format)
        concrete = table.get(fmt)
        if concrete is None:
            if raw_starts_below_zero:
                choices = ", ".join(sorted(n for n in PROTOCOLS if n.startswith(f"{self.name}_")))
                raise ScenetgError(
                    f"protocol {self.name}: its loaders clip GT starts differently per dataset and "
                    f"a {fmt!r} file does not say which dataset it is ({raw_starts_below_zero} GT "
                    f"windows start before 0); use --protocol {choices}"
                )
            return self
        return get_protocol(concrete, self.strict)


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        # SceneTG's own rules (DESIGN.md "Evaluation"): everything clipped to the video, every
        # annotation counts.
        Protocol("default", False, "both", True, "annotations", "SceneTG DESIGN.md Evaluation"),
        # jayleicn/moment_detr standalone_eval/eval.py `compute_mr_r1` (+ utils.py
        # `compute_temporal_iou_batch_paired`): `iou >= thd`, windows as given (no clipping),
        # best GT window by IoU, mean over the submitted qids (`match_number=False` keeps the
        # shared ones; the default asserts they equal the GT's).
        Protocol(
            "moment_detr", False, "none", False, "predictions",
            "jayleicn/moment_detr standalone_eval/eval.py compute_mr_r1",
        ),
        # showlab/UniVTG standalone_eval/eval.py: Moment-DETR's script with MR-mIoU added (mean of
        # the same paired IoUs); same conventions.
        Protocol(
            "univtg", False, "none", False, "predictions",
            "showlab/UniVTG standalone_eval/eval.py (Moment-DETR's compute_mr_r1 + mIoU)",
        ),
        # MCG-NJU/MMN mmn/data/datasets/evaluation.py `evaluate`: `mious >= iou_metrics`, divided
        # by every dataset instance; GT from mmn/data/datasets/charades.py (and activitynet.py,
        # tacos.py): `[max(s, 0), min(e, duration)]`; predictions come from the proposal grid
        # (inside the video) and are not clipped by the evaluation.
        # IoU in float32 (`mmn/data/datasets/utils.py` `iou`: `.float()` tensors), compared with
        # `torch.tensor(iou_metrics)` (float32 thresholds: 0.3 -> 0.30000001, 0.7 -> 0.69999999).
        Protocol(
            "mmn", False, "both", False, "annotations",
            "MCG-NJU/MMN mmn/data/datasets/evaluation.py + datasets/charades.py + utils.py iou",
            float32=True,
        ),
        # EGO4D/episodic-memory NLQ/VSLNet/utils/evaluate_ego4d_nlq.py
        # `evaluate_nlq_performance`: `overlap > threshold`, GT `clip_start_sec/clip_end_sec` as
        # given, mean over the predictions submitted (`num_instances`).
        # R@k: `(overlap > threshold)[:KK].any()` over the submitted `predicted_times` (ranked);
        # mIoU: the first window's IoU. Every language query with a prediction is scored, with
        # or without text (its `gt_dict` keeps them all).
        Protocol(
            "ego4d_nlq", True, "none", False, "predictions",
            "EGO4D/episodic-memory NLQ/VSLNet/utils/evaluate_ego4d_nlq.py",
            recall_ks=(1, 5), recall_thresholds=(0.3, 0.5), keep_no_text=True,
        ),
        # xiaomi-research/time-r1 src/vllm_inference/eval_all.py `load_scored_data` +
        # `calc_score`: `itm > i`, a null prediction scores 0, GT `timestamp` as given
        # (data/data_loader.py does not clip), mean over the prediction lines.
        Protocol(
            "time_r1", True, "none", False, "predictions",
            "xiaomi-research/time-r1 src/vllm_inference/eval_all.py",
        ),
        # microsoft/VideoX 2D-TAN/lib/core/eval.py `eval`: `overlap > t`, divided by every
        # annotation; GT from lib/datasets/charades.py: `e = min(e, duration)`, start unclipped;
        # predictions come from the moment map (inside the video), not clipped by `eval`.
        # `2d_tan` resolves per annotation format (`for_format`): charades -> 2d_tan_charades,
        # activitynet -> 2d_tan_activitynet; other formats keep the Charades rule unless a GT
        # window starts before 0 (then the user must name the dataset).
        Protocol(
            "2d_tan", True, "end", False, "annotations",
            "microsoft/VideoX 2D-TAN/lib/core/eval.py + lib/datasets/charades.py",
            by_format=(("charades", "2d_tan_charades"), ("activitynet", "2d_tan_activitynet")),
        ),
        Protocol(
            "2d_tan_charades", True, "end", False, "annotations",
            "microsoft/VideoX 2D-TAN/lib/core/eval.py + lib/datasets/charades.py",
        ),
        # lib/datasets/activitynet.py and tacos.py: `[max(s, 0), min(e, duration)]`.
        Protocol(
            "2d_tan_activitynet", True, "both", False, "annotations",
            "microsoft/VideoX 2D-TAN/lib/core/eval.py + lib/datasets/activitynet.py",
        ),
        Protocol(
            "2d_tan_tacos", True, "both", False, "annotations",
            "microsoft/VideoX 2D-TAN/lib/core/eval.py + lib/datasets/tacos.py",
        ),
        # Soldelli/MAD baselines/VLG-Net/lib/engine/evaluation.py `evaluate`: R@{1,5,10,50,100}
        # at IoU {0.1,0.3,0.5} (`mious >= iou_metrics`, a query with fewer than 100 windows
        # padded with IoU 0), divided by every annotation; IoU in float32
        # (lib/data/datasets/utils.py `iou`); GT from lib/data/datasets/mad.py:
        # `ext_timestamps` as `[max(s, 0), min(e, movie_duration)]`; windows not clipped.
        Protocol(
            "mad", False, "both", False, "annotations",
            "Soldelli/MAD baselines/VLG-Net/lib/engine/evaluation.py + lib/data/datasets/mad.py",
            float32=True, recall_ks=(1, 5, 10, 50, 100), recall_thresholds=(0.1, 0.3, 0.5),
        ),
    )
}
PROTOCOL_ALIASES = {
    "momentdetr": "moment_detr",
    "qvhighlights": "moment_detr",
    "ego4d": "ego4d_nlq",
    "nlq": "ego4d_nlq",
    "timer1": "time_r1",
    "2dtan": "2d_tan",
    "2dtancharades": "2d_tan_charades",
    "2dtanactivitynet": "2d_tan_activitynet",
    "2dtantacos": "2d_tan_tacos",
    "tan": "2d_tan",
}


def get_protocol(name: str | Protocol = "default", strict: bool = False) -> Protocol:
    """The named preset; `strict=True` switches it to IoU > m (the `--strict` shortcut), and the
    name says so (`default+strict`) unless the preset is strict already."""
    if isinstance(name, Protocol):
        protocol = name
    else:
        key = str(name).strip().lower().replace("-", "_")
        key = PROTOCOL_ALIASES.get(key.replace("_", ""), PROTOCOL_ALIASES.get(key, key))
        if key not in PROTOCOLS:
            raise ScenetgError(
                f"unknown protocol {name!r}; use one of {', '.join(PROTOCOLS)}"
            )
        protocol = PROTOCOLS[key]
    if strict and not protocol.strict:
        protocol = replace(protocol, name=f"{protocol.name}+strict", strict=True)
    return protocol
