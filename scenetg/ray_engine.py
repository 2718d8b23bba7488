"""What the build's and eval's Ray engines share, engine-neutral: connecting to Ray and sizing
actor pools against what the cluster offers (a request Ray cannot meet makes Ray Data wait
forever with no error, so it is refused before anything starts, naming its config key)."""

from __future__ import annotations

import logging
from typing import Any

from scenetg.errors import ConfigError
from scenetg.extras import require_extra


def init_ray(address: str | None, num_cpus: int | None, feature: str = "--engine ray (engine.name: ray)") -> None:
    """Connect to the cluster at `address`, or start a small local Ray; quiet on the terminal."""
    require_extra("ray", "ray", feature)
    import ray  # deferred: pulls ray
    from ray.data import DataContext

    # Our own progress bar and summary replace Ray Data's per-operator logging.
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=256 << 20, **common)


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


def actor_gpus(asked: float | str, actors: int, cluster: dict[str, float], key: str) -> float:
    """GPUs per actor of a pool of `actors`: `asked`, or for ``auto`` a whole GPU each when the
    cluster has that many, else an equal share (two decimals), else 0 (CPU actors). ConfigError
    naming `key` when the pool needs more GPUs than the cluster has, or a fraction above 1."""
    total = float(cluster.get("GPU", 0.0))
    if is_auto(asked):
        return min(1.0, int(total / actors * 100) / 100) if total > 0 else 0.0
    gpus = float(asked)
    if actors * gpus > total + 1e-9:
        raise ConfigError(f"{key}: {actors} actor(s) x {gpus:g} GPU need {actors * gpus:g} GPU; "
                          f"the Ray cluster offers {total:g} (use auto or 0)")
    if gpus > 1 and not gpus.is_integer():
        raise ConfigError(f"{key}: Ray takes a fraction below 1 or a whole number, got {gpus:g}")
    return gpus


def actor_cpus(asked: float | str, actors: int, cluster: dict[str, float], reserved: float,
               key: str) -> float:
    """CPUs per actor: `asked`, or for ``auto`` 1 each when the cluster has them after
    `reserved` (the CPU tasks that feed the actors), else an equal share of what is left.
    ConfigError naming `key` when the actors and `reserved` need more than the cluster has."""
    total = float(cluster.get("CPU", 0.0))
    left = total - reserved
    cpus = (min(1.0, int(left / actors * 100) / 100) if left > 0 else 0.0) if is_auto(asked) else float(asked)
    if cpus <= 0 or actors * cpus > left + 1e-9:
        raise ConfigError(f"{key}: {actors} actor(s) x {cpus:g} CPU and {reserved:g} CPU for the "
                          f"decoding tasks need {actors * cpus + reserved:g} CPU; the Ray cluster "
                          f"offers {total:g}")
    return cpus
