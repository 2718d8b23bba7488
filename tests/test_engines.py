"""The Ray engine's resource plan: `auto` GPUs, and requests the cluster cannot meet fail at once."""

from __future__ import annotations

import pytest

from scenetg.config import EngineConfig
from scenetg.curate.run.engines import plan_resources
from scenetg.errors import ConfigError


def test_auto_uses_no_gpu_on_a_cpu_only_cluster():
    assert plan_resources(EngineConfig(), {"CPU": 2.0}, "filter") == {"caption": 0.0, "clip": 0.0}


def test_auto_gives_each_pool_a_gpu_when_there_are_enough():
    assert plan_resources(EngineConfig(), {"CPU": 16.0, "GPU": 2.0}, "filter") == {"caption": 1.0, "clip": 1.0}


def test_auto_shares_a_single_gpu_so_both_pools_can_start():
    plan = plan_resources(EngineConfig(), {"CPU": 16.0, "GPU": 1.0}, "filter")
    assert plan == {"caption": 0.5, "clip": 0.5}
    explicit = plan_resources(EngineConfig(caption_gpus=1), {"CPU": 16.0, "GPU": 1.0}, "filter")
    assert explicit == {"caption": 1.0, "clip": 0.0}


def test_a_gpu_request_on_a_cpu_cluster_names_the_key():
    with pytest.raises(ConfigError, match=r"^engine.caption_gpus: 1 actor\(s\) x 1 GPU need 1 GPU; "
                                          r"the Ray cluster offers 0 \(use auto or 0\)$"):
        plan_resources(EngineConfig(caption_gpus=1.0), {"CPU": 2.0}, "filter")
    # only the stages that run are checked: the shots stage alone needs no GPU
    assert plan_resources(EngineConfig(caption_gpus=1.0), {"CPU": 2.0}, "shots") == {}


def test_more_actors_than_gpus_or_cpus_fail():
    with pytest.raises(ConfigError, match=r"^engine.clip_gpus: 3 actor\(s\) x 1 GPU need 3 GPU"):
        plan_resources(EngineConfig(clip_gpus=1, clip_actors=3), {"CPU": 16.0, "GPU": 2.0}, "filter")
    with pytest.raises(ConfigError, match=r"^engine.caption_actors: 4 actor\(s\) need 1 CPU each"):
        plan_resources(EngineConfig(caption_actors=4), {"CPU": 2.0}, "captions")
