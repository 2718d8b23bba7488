"""Resume restores the weights, not only the step count: a resumed run equals the checkpoint it
starts from, and a run stopped by Ctrl-C or SIGKILL and resumed equals an uninterrupted one at the
same step (full fine-tuning and LoRA)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from scenetg.cli import main
from tests.train_fixtures import make_cfg

pytestmark = pytest.mark.slow

STEPS = 3
STOP_AT = 2  # stopped as step 3 begins: checkpoint-2 is the last one on disk
# One prompt per step: the 4 queries make one epoch of 4 steps, so the stop is mid-epoch. (At an
# epoch boundary a resumed run draws another order: TRL's RepeatSampler keeps one generator
# across epochs and a resumed sampler starts it afresh.)
ATOL = 1e-6
"""CPU float32; the same rollouts and updates run in the same order, so only summation order
could differ. One step moves weights by ~lr = 1e-3 (checked below), far above it."""


def _cfg(grounding_set, tiny_models, out, lora: bool):
    cfg = make_cfg(grounding_set, tiny_models, out, max_steps=STEPS, save_steps=1, per_device_train_batch_size=2,
                   learning_rate=1e-3, lr_scheduler_type="constant",
                   entropy_coef=0.1)  # the random tiny model earns no reward: entropy moves it
    if lora:
        cfg.lora.enabled, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout = True, 4, 8, 0.0
    return cfg


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=ATOL, rtol=0, msg=key)


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


class _Stop:
    """A TrainerCallback that stops the run as step `STOP_AT + 1` begins: Ctrl-C, or SIGKILL."""

    def __new__(cls, how: str):
        from transformers import TrainerCallback

        class Stop(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == STOP_AT:
                    if how == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise KeyboardInterrupt

        return Stop()


def _stopping(monkeypatch, how: str) -> None:
    import scenetg.rl.train as train_module

    build = train_module.build_trainer

    def build_and_stop(*args, **kwargs):
        trainer, processor, n = build(*args, **kwargs)
        trainer.add_callback(_Stop(how))
        return trainer, processor, n

    monkeypatch.setattr(train_module, "build_trainer", build_and_stop)


def _reference(kind: str, grounding_set, tiny_models, tmp_path_factory) -> Path:
    """An uninterrupted run of `STEPS` steps, a checkpoint after each."""
    from scenetg.rl.train import train

    out = tmp_path_factory.mktemp(f"reference_{kind}") / "run"
    train(_cfg(grounding_set, tiny_models, out, kind == "lora"))
    return out


@pytest.fixture(scope="module")
def reference_full(grounding_set, tiny_models, tmp_path_factory):
    return _reference("full", grounding_set, tiny_models, tmp_path_factory)


@pytest.fixture(scope="module")
def reference_lora(grounding_set, tiny_models, tmp_path_factory):
    return _reference("lora", grounding_set, tiny_models, tmp_path_factory)


def _config_file(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def test_a_resumed_run_starts_from_the_checkpoint_weights(reference_full, grounding_set, tiny_models, tmp_path,
                                                         capsys):
    """Full fine-tuning (a LoRA checkpoint holds the adapter only; the Ctrl-C test covers LoRA):
    the trainer's resume load puts the checkpoint's weights into the start model."""
    from scenetg.rl.train import build_trainer

    ref, checkpoint = reference_full, reference_full / "checkpoint-2"
    start = _weights(Path(tiny_models["qwen"]))
    saved = _weights(checkpoint)
    assert _max_diff(start, saved) > 100 * ATOL  # training moved the weights: the check can fail

    trainer, _, _ = build_trainer(_cfg(grounding_set, tiny_models, tmp_path / "run", lora=False))
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.model.save_pretrained(tmp_path / "loaded")  # the checkpoint's own key names
    _assert_same(_weights(tmp_path / "loaded"), saved)

    # nothing left to train: refused (transformers would train one step past max_steps)
    config = _config_file(_cfg(grounding_set, tiny_models, ref, lora=False), tmp_path / "train.yaml")
    assert main(["train", "-c", str(config), "--max-steps", "2", "--resume-from-checkpoint", str(checkpoint)]) == 2
    assert f"grpo.max_steps: 2, but {checkpoint} is at step 2 already" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(kind, request, grounding_set, tiny_models, tmp_path,
                                                       monkeypatch, capsys):
    from scenetg.rl.train import train

    lora, ref = kind == "lora", request.getfixturevalue(f"reference_{kind}")
    run = tmp_path / "run"
    cfg = _cfg(grounding_set, tiny_models, run, lora)
    with monkeypatch.context() as patch:
        _stopping(patch, "interrupt")
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    assert not (run / "final").exists() and (run / f"checkpoint-{STOP_AT}").is_dir()
    assert not (run / f"checkpoint-{STOP_AT + 1}").exists()

    config = _config_file(cfg, tmp_path / "train.yaml")
    assert main(["train", "-c", str(config), "--resume-from-checkpoint", "last"]) == 0
    assert f"trained {STEPS} steps" in capsys.readouterr().out
    final, expected = _weights(run / "final"), _weights(ref / "final")
    _assert_same(final, expected)
    assert _max_diff(expected, _weights(Path(tiny_models["qwen"]))) > 100 * ATOL


def test_sigkill_then_resume_equals_an_uninterrupted_run(reference_full, grounding_set, tiny_models, tmp_path):
    """Full fine-tuning, where resume loaded nothing (LoRA's resume path is the Ctrl-C test's)."""
    lora, ref = False, reference_full
    run = tmp_path / "run"
    config = _config_file(_cfg(grounding_set, tiny_models, run, lora), tmp_path / "train.yaml")
    script = (
        "import sys\n"
        "from tests.test_train_resume import _stopping\n"
        "from scenetg.rl.config import load_train_config\n"
        "from scenetg.rl.train import train\n"
        "class Patch:\n"
        "    def setattr(self, obj, name, value): setattr(obj, name, value)\n"
        "_stopping(Patch(), 'kill')\n"
        "train(load_train_config(sys.argv[1]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", script, str(config)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (run / f"checkpoint-{STOP_AT}").is_dir() and not (run / "final").exists()

    # the killed run's lock died with it: the resume takes the folder at once
    assert main(["train", "-c", str(config), "--resume-from-checkpoint", "last"]) == 0
    _assert_same(_weights(run / "final"), _weights(ref / "final"))
