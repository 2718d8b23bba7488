"""`scenetg eval-suite --config pipelines/eval.yaml` (`make eval`): ground + score several benchmarks.

For each benchmark and each method: `ground` (resumable predictions JSONL), then the metrics
(with `bootstrap` 95 % intervals), then one report (`OUT/report.md` + `OUT/iou_distribution.png`)
over all runs, with a paired sign test of every two methods of a benchmark (`OUT/paired.json`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.atomic_files import read_json, write_json_atomic
from scenetg.config_fields import coerce_fields, dataclass_from_mapping, read_config_mapping
from scenetg.errors import ConfigError, ModelError, ScenetgError
from scenetg.eval.baselines import DEFAULT_CENTER_FRACTION
from scenetg.eval.metrics import compute_metrics, per_query_iou, resolve_protocol
from scenetg.eval.predictions import read_predictions
from scenetg.eval.producer import PRODUCER_SUFFIX, producer_path
from scenetg.eval.protocols import PROTOCOLS, get_protocol
from scenetg.eval.report import EvalResult, paired_tests, write_eval_report
from scenetg.eval.sharding import EvalEngineConfig
from scenetg.eval.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED
from scenetg.grounding.loaders import HUB_PREFIX, load_annotations
from scenetg.grounding.prompts import DEFAULT_MAX_SIDE
from scenetg.models.clip import check_clip_available, load_clip
from scenetg.models.qwen import check_qwen_available
from scenetg.models.runner import BACKENDS, coerce_vllm_memory, load_runner
from scenetg.models.vllm_runner import check_vllm_device
from scenetg.progress import Reporter

METHODS = ("model", "center", "clip")


@dataclass
class BenchmarkSpec:
    """One annotation set to evaluate on."""

    name: str
    annotations: str
    videos: str
    format: str = "auto"
    durations: str | None = None
    """Metadata CSV with video lengths (Charades_v1_test.csv) for files that lack them."""
    split: str | None = None
    """Split of a SceneTG dataset folder."""
    limit: int | None = field(default=None, metadata={"min": 0})
    protocol: str | None = field(default=None, metadata={"custom": True})
    """Scoring protocol for this benchmark (its official script's); None: the suite's `protocol`."""


@dataclass
class EvalConfig:
    """Grounding evaluation over benchmarks; paths relative to the current folder."""

    out: str = "out/eval"
    methods: list[str] = field(default_factory=lambda: ["model"])
    model: str | None = None
    """Grounding MLLM (HF id or folder) for method `model`."""
    clip_model: str | None = None
    """OpenCLIP name or folder for method `clip`."""
    fps: float = field(default=2.0, metadata={"min": 0.0, "min_open": True})
    max_frames: int = field(default=128, metadata={"min": 1})
    batch_size: int | str = field(default="auto", metadata={"batch_size": True})
    """Queries per generate call: ``auto`` (4 on a CPU, by free memory on CUDA) or a number."""
    max_new_tokens: int = field(default=256, metadata={"min": 1})
    backend: str = "transformers"
    """Generation engine of the MLLMs: ``transformers`` or ``vllm`` (in-process engine; with
    several MLLMs they split `vllm_memory`)."""
    vllm_memory: float | str = field(default="auto", metadata={"custom": True})
    """With ``backend: vllm``: the share of the GPU's memory (of host RAM on vLLM's CPU build)
    the engines take together, or ``auto`` (0.9 on a GPU, a 1 GiB KV cache on the CPU build;
    `scenetg.models.vllm_runner.vllm_memory_args`)."""
    device: str = "auto"
    dtype: str = "auto"
    strict: bool = False
    """R1@m counts IoU > m, on top of the protocol (as `scenetg eval --strict`)."""
    protocol: str = field(default="default", metadata={"custom": True})
    """How R1/mIoU are scored: a preset of `scenetg.eval.protocols` (`default`, `moment_detr`,
    `univtg`, `mmn`, `ego4d_nlq`, `time_r1`, `2d_tan`), as `scenetg eval --protocol`."""
    bootstrap: int = field(default=DEFAULT_RESAMPLES, metadata={"min": 0})
    """Resamples of each R1 / mIoU 95 % bootstrap interval over queries (0: none)."""
    seed: int = DEFAULT_SEED
    """Seed of the bootstrap resamples."""
    models: dict[str, str] = field(default_factory=dict)
    """More MLLMs to compare, each a method of its own: ``{trained: out/train/final}`` and
    ``methods: [model, trained, center]`` grounds with both the base and the trained model."""
    benchmarks: list[BenchmarkSpec] = field(default_factory=list, metadata={"custom": True})
    engine: EvalEngineConfig = field(default_factory=EvalEngineConfig)
    """Where the MLLM methods run: ``name: local`` or ``ray`` (model actors, as the build's
    ``engine:``; `scenetg.eval.sharding`). Baselines run locally."""

    def validate(self) -> EvalConfig:
        """Every value coerced to its type and range through `scenetg.config_fields` (one line
        naming the key), then the combinations checked."""
        coerce_fields(self)
        self.vllm_memory = coerce_vllm_memory("vllm_memory", self.vllm_memory)
        for i, b in enumerate(self.benchmarks):
            coerce_fields(b, f"benchmarks[{i}]")
            check_benchmark_name(f"benchmarks[{i}].name", b.name)
        clash = sorted(set(self.models) & set(METHODS))
        if clash:
            raise ConfigError(f"models: {clash[0]!r} is a built-in method name; pick another")
        bad = [m for m in self.methods if m not in METHODS and m not in self.models]
        if bad:
            raise ConfigError(f"methods: unknown {bad}; choose from {list(METHODS) + list(self.models)}")
        if "model" in self.methods and not self.model:
            raise ConfigError("method 'model' needs `model:` (HF id or folder)")
        if "clip" in self.methods and not self.clip_model:
            raise ConfigError("method 'clip' needs `clip_model:`")

        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: use one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend == "vllm":

            check_vllm_device(self.device, "device:", "backend:")
        if not self.benchmarks:
            raise ConfigError("benchmarks: empty; list at least one {name, annotations, videos}")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ConfigError("benchmarks: names must be unique")
        self.protocol = _protocol_name("protocol", self.protocol)
        for b in self.benchmarks:
            if b.protocol is not None:
                b.protocol = _protocol_name(f"benchmarks.{b.name}.protocol", b.protocol)
        return self

    def protocol_for(self, spec: BenchmarkSpec) -> str:
        """The preset `spec` is scored with (its own, else the suite's)."""
        return spec.protocol or self.protocol


def check_benchmark_name(key: str, name: str) -> None:
    """A benchmark's name is one folder of `out` (its predictions go to ``out/NAME/``): no
    separators, no ``..``, not empty, so no config writes outside `out`."""
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0:") or name.startswith("."):
        raise ConfigError(f"{key}: {name!r} is not a plain folder name (it names the folder "
                          "out/NAME; use letters, digits, -, _ and .)")


def _protocol_name(key: str, value: object) -> str:
    """The canonical preset name of `value` (aliases such as `ego4d` accepted); ConfigError
    naming `key` otherwise."""

    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a protocol name, got {value!r}; use one of {', '.join(PROTOCOLS)}")
    try:
        return get_protocol(value).name
    except ScenetgError:
        raise ConfigError(f"{key}: unknown protocol {value!r}; use one of {', '.join(PROTOCOLS)}") from None


def load_eval_config(path: Path | None, overrides: dict[str, Any] | None = None) -> EvalConfig:
    data = read_config_mapping(path, {k: v for k, v in (overrides or {}).items() if v is not None})
    benchmarks = data.get("benchmarks") or []
    if not isinstance(benchmarks, list):
        raise ConfigError(f"benchmarks: expected a list, got {benchmarks!r}")
    data["benchmarks"] = [dataclass_from_mapping(BenchmarkSpec, b, f"benchmarks[{i}]")
                          for i, b in enumerate(benchmarks)]
    return dataclass_from_mapping(EvalConfig, data).validate()


class MissingInputs(ConfigError):
    """Several missing pieces of an eval config; the CLI prints one line for each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def missing_inputs(cfg: EvalConfig) -> list[str]:
    """Every benchmark's annotations, durations CSV and videos folder, and each model, checked
    before any heavy work: one line per missing piece. Relative paths are paths (from the
    current folder); only ``hub:ORG/NAME`` is a Hub dataset."""

    problems = []
    for b in cfg.benchmarks:
        key = f"benchmarks.{b.name}"
        ann = str(b.annotations)
        if not ann.startswith(HUB_PREFIX) and not Path(ann).exists():
            if Path(ann).suffix:
                problems.append(f"{key}.annotations: {ann}: no such file")
            else:
                problems.append(f"{key}.annotations: {ann}: no such folder; run `make build` first "
                                f"(a Hub dataset is written {HUB_PREFIX}ORG/NAME)")
        if b.durations and not Path(b.durations).is_file():
            problems.append(f"{key}.durations: {b.durations}: no such file")
        if not Path(b.videos).is_dir():
            problems.append(f"{key}.videos: {b.videos}: no such folder")
    checks = [("model", lambda: check_qwen_available(cfg.model, flag="`model:` (or --model)"))
              if "model" in cfg.methods else None,
              ("clip_model", lambda: check_clip_available(cfg.clip_model, flag="`clip_model:`")) if "clip" in cfg.methods else None]
    checks += [(f"models.{n}", lambda p=p, n=n: check_qwen_available(p, flag=f"models.{n}"))
               for n, p in cfg.models.items() if n in cfg.methods]
    for name, check in filter(None, checks):
        try:
            check()
        except ModelError as exc:
            problems.append(f"{name}: {exc}")
    return problems


CACHE_FOLDER = "cache"


def keyed_predictions(folder: Path, method: str, producer: dict[str, Any]) -> Path:
    """``folder/METHOD.jsonl``, holding the predictions of `producer` (by its fingerprint).

    Predictions of another producer found there (another model at the same `model:`, other
    settings) are moved to ``folder/cache/METHOD-FINGERPRINT.jsonl`` with their sidecar, never
    reused for this one; a cached file of this producer is moved back, so switching back to an
    earlier model resumes its predictions instead of grounding again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{method}.jsonl"
    side = producer_path(path)
    cache = folder / CACHE_FOLDER
    try:
        current = read_json(side).get("fingerprint") if side.is_file() else None
    except (OSError, ValueError, AttributeError):
        current = None
    if path.exists() and current != producer["fingerprint"]:
        cache.mkdir(exist_ok=True)
        stem = f"{method}-{current or 'unrecorded'}"
        os.replace(path, cache / f"{stem}.jsonl")
        if side.is_file():
            os.replace(side, cache / f"{stem}{PRODUCER_SUFFIX}")
    stem = f"{method}-{producer['fingerprint']}"
    if not path.exists() and (cache / f"{stem}.jsonl").is_file():
        os.replace(cache / f"{stem}.jsonl", path)
        if (cache / f"{stem}{PRODUCER_SUFFIX}").is_file():
            os.replace(cache / f"{stem}{PRODUCER_SUFFIX}", side)
    return path


def run_eval_suite(cfg: EvalConfig, reporter: Reporter | None = None):
    """Ground and score every (benchmark, method); returns (results, report path)."""
    from scenetg.eval.grounding import ground, grounding_producer  # deferred: pulls av

    out = Path(cfg.out)
    problems = missing_inputs(cfg)
    if problems:
        raise MissingInputs(problems)
    # Annotations first: a malformed file fails before any model loads.
    benchmarks = []
    for spec in cfg.benchmarks:
        named = get_protocol(cfg.protocol_for(spec), cfg.strict)
        records, report = load_annotations(spec.annotations, spec.format, metadata_csv=spec.durations,
                                           videos_dir=spec.videos, split=spec.split,
                                           keep_no_text=named.keep_no_text)
        protocol = resolve_protocol(named, report.format, records)
        if report.has_issues and reporter:
            reporter.log(report.summary())
        benchmarks.append((spec, records if spec.limit is None else records[: spec.limit], protocol))
    # Each model is loaded once for all benchmarks (a 7B MLLM takes a while to load).
    models: dict[str, Any] = {"center": None}
    mllms = {**({"model": (cfg.model, "`model:` (or --model)")} if "model" in cfg.methods else {}),
             **{name: (path, f"models.{name}") for name, path in cfg.models.items()
                if name in cfg.methods}}
    on_ray = cfg.engine.name == "ray"
    for name, (path, flag) in mllms.items():  # under Ray, each actor loads its own
        models[name] = path if on_ray else load_runner(
            path, cfg.backend, dtype=cfg.dtype, device=cfg.device,
            max_new_tokens=cfg.max_new_tokens, what=flag, vllm_memory=cfg.vllm_memory,
            vllm_engines=len(mllms), memory_key="vllm_memory:")
    if "clip" in cfg.methods:
        models["clip"] = load_clip(cfg.clip_model, device=cfg.device)
    names = {"model": cfg.model, "clip": cfg.clip_model, **cfg.models}
    results = []
    for spec, records, protocol in benchmarks:
        for method in cfg.methods:
            kind = "model" if method in cfg.models else method
            settings = dict(fps=cfg.fps, max_frames=cfg.max_frames, max_side=DEFAULT_MAX_SIDE,
                            backend=cfg.backend, dtype=cfg.dtype, max_new_tokens=cfg.max_new_tokens)
            producer = grounding_producer(kind, models[method], model_name=names.get(method),
                                          center_fraction=DEFAULT_CENTER_FRACTION, **settings)
            preds_path = keyed_predictions(out / spec.name, method, producer)
            stats = ground(records, spec.videos, preds_path, method=kind, model=models[method],
                   model_name=names.get(method), batch_size=cfg.batch_size, reporter=reporter,
                   device=cfg.device, engine=cfg.engine if kind == "model" else None,
                   vllm_memory=cfg.vllm_memory, vllm_engines=len(mllms), **settings)
            predictions = read_predictions(preds_path)
            metrics = compute_metrics(records, predictions, protocol=protocol,
                                      bootstrap=cfg.bootstrap, seed=cfg.seed)
            write_json_atomic(preds_path.with_suffix(".metrics.json"), metrics)
            ious = per_query_iou(records, predictions, protocol=protocol)
            counted = (np.ones(len(records), dtype=bool) if protocol.denominator == "annotations"
                       else ~predictions.rows([r.qid for r in records])[1])
            results.append(EvalResult(spec.name, method, metrics, ious, preds_path, counted,
                                      failed=stats.failed))
    write_json_atomic(out / "paired.json", paired_tests(results))
    return results, write_eval_report(results, out)
