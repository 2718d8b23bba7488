"""Where `ground`, `answer` and eval-suite run: `local` (in-process) or `ray` (Ray Data).

Under Ray, a run is a list of per-video items (a video's queries): each is prepared — its frames
decoded — in a CPU task, then handed, a few videos per call, to an actor pool in which every
actor holds one model (one GPU each when the cluster has them, else CPU actors); results come
back to the driver, which alone writes the predictions file (appending as they arrive, so a
killed run resumes like a local one). What a task or an actor does is given by the caller
(`prepare`, `make_worker`); this module holds no task logic, as the build's engine holds none.
Resources are checked against ``ray.cluster_resources()`` before anything starts.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from scenetg.config_fields import coerce_fields, coerce_float
from scenetg.ray_engine import actor_cpus, actor_gpus, init_ray, is_auto

ENGINES = ("local", "ray")

DECODE_TASK_CPUS = 0.5
"""CPUs reserved for each frame-decoding task (the actors get the rest, `engine.model_cpus`)."""

VIDEOS_PER_CALL = 8
"""Videos an actor takes per call: their queries are batched across videos, as locally."""


@dataclass
class EvalEngineConfig:
    """The ``engine:`` section of an eval config (keys as in the build's ``engine:``)."""

    name: str = field(default="local", metadata={"choices": ENGINES})
    """`local` (in-process) or `ray` (Ray Data)."""
    ray_address: str | None = None
    """`ray.init(address=...)`; None starts a local Ray."""
    num_cpus: int | None = field(default=None, metadata={"min": 1})
    """CPUs of the local Ray started when `ray_address` is None (None: all)."""
    model_actors: int = field(default=1, metadata={"min": 1})
    """Actors each holding one model (one per GPU to use)."""
    model_gpus: float | str = field(default="auto", metadata={"custom": True})
    """GPUs per actor; `auto`: 1 when the cluster has one per actor, else a share, else 0."""
    model_cpus: float | str = field(default="auto", metadata={"custom": True})
    """CPUs per actor; `auto`: 1, or a share of what the decoding tasks leave."""
    videos_per_call: int = field(default=VIDEOS_PER_CALL, metadata={"min": 1})
    """Videos an actor takes per call; their queries are batched across them."""

    def __post_init__(self) -> None:
        coerce_fields(self, "engine")
        for key in ("model_gpus", "model_cpus"):
            value = getattr(self, key)
            if is_auto(value):
                setattr(self, key, "auto")
            else:
                setattr(self, key, coerce_float(f"engine.{key}", value, min=0.0,
                                                min_open=key == "model_cpus"))


def resources(eng: EvalEngineConfig, cluster: dict[str, float]) -> tuple[float, float]:
    """(GPUs, CPUs) per model actor, checked against `cluster` (ConfigError naming the key)."""
    gpus = actor_gpus(eng.model_gpus, eng.model_actors, cluster, "engine.model_gpus")
    cpus = actor_cpus(eng.model_cpus, eng.model_actors, cluster, DECODE_TASK_CPUS, "engine.model_cpus")
    return gpus, cpus


def _prepare_row(prepare: Callable[[Any], Any], row: dict[str, Any]) -> dict[str, Any]:
    """A CPU task: one pickled item -> the pickled prepared item."""
    return {"item": pickle.dumps(prepare(pickle.loads(row["item"])), protocol=5)}


class _Actor:
    """An actor of the pool: builds its worker (and so loads its model) once, then maps calls."""

    def __init__(self, make_worker: Callable[[], Callable[[list], list]]):
        self.worker = make_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np  # deferred: pulls numpy

        results = self.worker([pickle.loads(b) for b in batch["item"]])
        return {"result": np.array([pickle.dumps(r, protocol=5) for r in results], dtype=object)}


def run_on_ray(
    items: list[Any],
    prepare: Callable[[Any], Any],
    make_worker: Callable[[], Callable[[list], list]],
    eng: EvalEngineConfig,
) -> Iterator[Any]:
    """Each of `worker(prepared items)`'s results, in the order they finish. `prepare` runs in
    CPU tasks, `make_worker()` once in each of `eng.model_actors` actors; both must pickle (Ray
    ships them by reference to their module)."""
    init_ray(eng.ray_address, eng.num_cpus, "--engine ray (engine.name: ray)")
    import ray  # deferred: pulls ray
    import ray.data

    gpus, cpus = resources(eng, ray.cluster_resources())
    if not items:
        return
    rows = [{"item": pickle.dumps(it, protocol=5)} for it in items]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map(lambda row: _prepare_row(prepare, row), num_cpus=DECODE_TASK_CPUS)
    ds = ds.map_batches(_Actor, fn_constructor_args=(make_worker,), batch_size=eng.videos_per_call,
                        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=eng.model_actors),
                        num_gpus=gpus or None, num_cpus=cpus)
    for row in ds.iter_rows():
        yield pickle.loads(row["result"])
