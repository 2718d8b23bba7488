"""`scenetg train` config: YAML values coerced to their types, ranges checked, keys named."""

from __future__ import annotations

import pytest

from scenetg.errors import ConfigError
from scenetg.rl.config import load_train_config, train_config_from_dict


def test_strings_from_yaml_become_their_types():
    cfg = train_config_from_dict({"kl": {"beta": "0.1", "beta_timestamp": "0"},
                                  "lora": {"enabled": "false", "r": "16"}, "data": {"limit": "5"}})
    assert cfg.kl.beta == 0.1 and cfg.kl.beta_timestamp == 0.0
    assert cfg.lora.enabled is False and cfg.lora.r == 16 and cfg.data.limit == 5


@pytest.mark.parametrize(
    "data, message",
    [
        ({"lora": {"enabled": "maybe"}}, "lora.enabled: expected true or false"),
        ({"sampling": {"max_frames": 2.5}}, "sampling.max_frames: expected an integer"),
        ({"kl": {"beta": "nan"}}, "kl.beta: expected a number"),
        ({"kl": {"beta": 0.01, "beta_timestamp": 0.04}}, "kl.beta_timestamp: must be in [0, kl.beta"),
        ({"rewards": {"iou": 0, "cendist": 0, "format": 0}}, "rewards: need a weight > 0"),
        ({"rewards": {"iou": -1}}, "rewards.iou: must be >= 0"),
        ({"grpo": {"beta": 0.1}}, "grpo.beta: set it as kl.beta"),
        ({"grpo": {"use_liger_kernel": True}}, "grpo.use_liger_kernel"),
        ({"grpo": {"use_vllm": "sometimes"}}, "grpo.use_vllm: expected true or false"),
        ({"grpo": {"use_vllm": True, "vllm_mode": "server"}}, "grpo.vllm_mode: server is not supported"),
        ({"kl": {"gamma": 1}}, "unknown config key kl.gamma"),
        ({"data": "out"}, "data: expected a mapping"),
    ],
)
def test_bad_values_name_their_key(data, message):
    with pytest.raises(ConfigError) as err:
        train_config_from_dict(data)
    assert message in str(err.value)


def test_overrides_and_missing_file(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("model: m\nkl: {beta: 0.02}\n")
    cfg = load_train_config(path, {"kl.beta_timestamp": 0.02, "grpo.max_steps": 3})
    assert cfg.kl.beta_timestamp == 0.02 and cfg.grpo == {"max_steps": 3}
    with pytest.raises(ConfigError, match="config file not found"):
        load_train_config(tmp_path / "nope.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    real = load_train_config(root / "pipelines" / "train.yaml")
    assert real.model == "Qwen/Qwen2.5-VL-7B-Instruct" and real.lora.enabled and real.kl.beta_timestamp == 0.0
    demo = load_train_config(root / "pipelines" / "demo" / "train.yaml")
    assert demo.lora.enabled is False and demo.grpo["max_steps"] >= 2


@pytest.mark.parametrize("key", ["gradient_checkpointing", "activation_checkpointing"])
def test_checkpointing_key_either_name_is_honoured(key):
    """transformers 5 renamed the option; the old name (a deprecated alias) must not lose to our
    CPU default of False."""
    from scenetg.rl.train import grpo_args

    cfg = train_config_from_dict({"grpo": {key: True, "report_to": "none"}, "output_dir": "/tmp/x"})
    args = grpo_args(cfg, "cpu")  # either transformers: 5.25 has both names, 5.17 the old one only
    assert args.gradient_checkpointing is True
    assert getattr(args, "activation_checkpointing", True) is True


@pytest.mark.parametrize("new_name", [True, False])
def test_checkpointing_keys_take_the_installed_transformers_name(new_name):
    """transformers 5.17 (the [vllm] extra's) rejects `activation_checkpointing`; 5.25 prefers it."""
    import dataclasses

    from scenetg.rl.train import checkpointing_names

    names = ["activation_checkpointing", "activation_checkpointing_kwargs"] if new_name else []
    fake = dataclasses.make_dataclass("Fake", ["gradient_checkpointing", "gradient_checkpointing_kwargs", *names])
    given = {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"every_n_layers": 2},
             "gradient_checkpointing": False, "seed": 3}
    out = checkpointing_names(given, fake)
    if new_name:  # the user's new-name value wins over the deprecated alias
        assert out == {"activation_checkpointing": True,
                       "activation_checkpointing_kwargs": {"every_n_layers": 2}, "seed": 3}
    else:  # the old name is the only one, and the user's explicit old-name value is kept
        assert out == {"gradient_checkpointing": False,
                       "gradient_checkpointing_kwargs": {"every_n_layers": 2}, "seed": 3}
    old_only = checkpointing_names({"gradient_checkpointing": True}, fake)
    assert old_only == ({"activation_checkpointing": True} if new_name else {"gradient_checkpointing": True})
    assert given["gradient_checkpointing"] is False and "seed" in given  # input left alone
