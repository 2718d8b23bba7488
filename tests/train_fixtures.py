"""Shared by the training tests: the queries of the `grounding_set` fixture and a tiny config."""

from __future__ import annotations

from scenetg.rl.config import train_config_from_dict

QUERIES = [
    ("a1", "a", 6.0, "the first scene", [0.0, 2.0]),
    ("a2", "a", 6.0, "the middle scene", [2.0, 4.0]),
    ("b1", "b", 4.0, "the last scene", [3.0, 4.0]),
    ("b2", "b", 4.0, "the long scene", [0.0, 3.0]),
]


def make_cfg(root, tiny_models, out, kl=(0.04, 0.0), **grpo):
    return train_config_from_dict(
        {
            "model": str(tiny_models["qwen"]),
            "output_dir": str(out),
            "device": "cpu",
            "dtype": "float32",
            "data": {"dataset": str(root / "train.jsonl"), "video_root": str(root / "videos")},
            "sampling": {"fps": 2.0, "max_frames": 4, "max_side": 64},
            "lora": {"enabled": False},
            "kl": {"beta": kl[0], "beta_timestamp": kl[1]},
            "grpo": {
                "num_generations": 2,
                "per_device_train_batch_size": 4,
                "max_completion_length": 8,
                "max_steps": 1,
                "save_steps": 1000,
                "report_to": "none",
                "seed": 0,
                **grpo,
            },
        }
    )
