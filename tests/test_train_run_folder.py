"""The training run folder belongs to one run (locked, refused when it holds another run, written
only after every check), and `scenetg train`'s one-line errors come before any model loads."""

from __future__ import annotations

import inspect
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scenetg.cli import main
from tests.train_fixtures import make_cfg

pytestmark = pytest.mark.slow

HOLD = """
import sys, time
from scenetg.folder_lock import lock_folder
with lock_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _config(cfg, path: Path, **changes) -> Path:
    data = cfg.to_dict()
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value
    path.write_text(yaml.safe_dump(data))
    return path


def _train(capsys, config: Path, *extra: str) -> tuple[int, str]:
    code = main(["train", "-c", str(config), *extra])
    return code, capsys.readouterr().err.strip()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".scenetg.lock"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_finished_run_folder_is_refused_kept_and_replaced_only_on_overwrite(
        grounding_set, tiny_models, tmp_path, capsys, umask_022):
    run = tmp_path / "run"
    cfg = make_cfg(grounding_set, tiny_models, run, max_steps=2, save_steps=1)
    config = _config(cfg, tmp_path / "train.yaml")
    assert _train(capsys, config)[0] == 0
    # model files honour the umask (safetensors saves through a 0600 temp file)
    for path in (run / "final" / "model.safetensors", run / "checkpoint-1" / "model.safetensors",
                 run / "checkpoint-1" / "optimizer.pt", run / "config.yaml"):
        assert _mode(path) == 0o644, path
    before = _snapshot(run)

    # the same config again, without --resume-from-checkpoint or --overwrite
    code, err = _train(capsys, config)
    assert code == 2 and err.splitlines()[-1].startswith("error: output_dir (--output-dir): ")
    assert "holds a run already (checkpoint-1, checkpoint-2, config.yaml, curves.png, final, metrics.jsonl)" in err
    assert "--resume-from-checkpoint last" in err and "--overwrite" in err
    assert _snapshot(run) == before

    # a run that fails its checks (a dtype no model has) leaves the finished run's config as it was
    code, err = _train(capsys, _config(cfg, tmp_path / "float8.yaml", dtype="float8"), "--overwrite")
    assert code == 2 and "error: dtype: unknown dtype 'float8'" in err
    assert _snapshot(run) == before

    # resuming with another config names the keys that differ
    changed = _config(cfg, tmp_path / "beta.yaml", kl__beta=0.1, kl__beta_timestamp=0.1)
    code, err = _train(capsys, changed, "--resume-from-checkpoint", "last", "--max-steps", "3")
    assert code == 2 and "kl.beta, kl.beta_timestamp differ from" in err and str(run / "config.yaml") in err
    assert _snapshot(run) == before

    # --overwrite replaces the run: the old checkpoint goes, so `last` cannot pick it up
    replaced = _config(cfg, tmp_path / "new.yaml", grpo__max_steps=1, kl__beta=0.1, kl__beta_timestamp=0.1)
    assert _train(capsys, replaced, "--overwrite")[0] == 0
    assert (run / "checkpoint-1").is_dir() and not (run / "checkpoint-2").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["kl"]["beta"] == 0.1
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "reward" in r] == [1]  # the old run's step 1 is gone
    assert _mode(run / "final" / "model.safetensors") == 0o644


def test_a_second_run_on_a_locked_folder_fails_at_once_and_other_ranks_share_it(
        grounding_set, tiny_models, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        config = _config(make_cfg(grounding_set, tiny_models, run), tmp_path / "train.yaml")
        code, err = _train(capsys, config)
        assert code == 2 and f"in use by another scenetg run (pid {holder.pid}" in err
        assert sorted(p.name for p in run.iterdir()) == [".scenetg.lock"]

        # a non-main rank of `accelerate launch` neither takes the lock nor writes the run's files
        monkeypatch.setenv("RANK", "1")
        assert _train(capsys, config)[0] == 0
        assert not (run / "config.yaml").exists() and not (run / "final").exists()
    finally:
        holder.kill()
        holder.wait()


def test_errors_name_the_key_or_path_before_any_model_loads(grounding_set, tiny_models, tmp_path, capsys,
                                                            monkeypatch):
    import scenetg.rl.train as train_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr(train_module, "load_policy", no_model)
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "fresh")

    def refused(config: Path, *extra: str) -> str:
        code, err = _train(capsys, config, *extra)
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and err.splitlines()[-1] == lines[0]  # one line, no traceback
        assert not (tmp_path / "fresh").exists()  # nothing written in the run folder
        return lines[0]

    assert "grpo.max_steps: expected an integer >= 1, got 0" in refused(_config(cfg, tmp_path / "a.yaml"),
                                                                        "--max-steps", "0")
    err = refused(_config(cfg, tmp_path / "b.yaml", grpo__loss_type="bogus"))
    assert "grpo.loss_type: must be one of grpo, bnpo" in err and "'bogus'" in err
    err = refused(_config(cfg, tmp_path / "c.yaml", dtype="float8"))
    assert "dtype: unknown dtype 'float8'" in err
    if not __import__("torch").cuda.is_available():
        assert "device: 'cuda', but no CUDA GPU is visible" in refused(_config(cfg, tmp_path / "d.yaml", device="cuda"))
    assert "device: 'tpu9' is not a device" in refused(_config(cfg, tmp_path / "e.yaml", device="tpu9"))

    # an output folder that is a file
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    err = refused(_config(cfg, tmp_path / "f.yaml", output_dir=str(a_file)))
    assert err == f"error: output_dir (--output-dir): {a_file} exists and is not a folder"
    err = refused(_config(cfg, tmp_path / "g.yaml", output_dir=str(a_file / "run")))
    assert f"{a_file / 'run'} has a parent {a_file} that is not a folder" in err

    # a checkpoint whose trainer_state.json is garbage: named, with the path
    broken = tmp_path / "broken"
    (broken / "checkpoint-3").mkdir(parents=True)
    (broken / "checkpoint-3" / "trainer_state.json").write_text("{not json")
    err = refused(_config(cfg, tmp_path / "h.yaml", output_dir=str(broken)), "--resume-from-checkpoint", "last")
    assert err.startswith(f"error: --resume-from-checkpoint: {broken / 'checkpoint-3' / 'trainer_state.json'}: unreadable")
    err = refused(_config(cfg, tmp_path / "i.yaml"), "--resume-from-checkpoint", "last")
    assert err == f"error: --resume-from-checkpoint: no checkpoint-N folder in {tmp_path / 'fresh'}"


def test_ctrl_c_names_the_resume_option_train_has(grounding_set, tiny_models, tmp_path, capsys, monkeypatch):
    import scenetg.commands.train_and_demo as commands

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_train", interrupted)
    config = _config(make_cfg(grounding_set, tiny_models, tmp_path / "run"), tmp_path / "train.yaml")
    assert main(["train", "-c", str(config)]) == 130
    err = capsys.readouterr().err
    assert "--resume-from-checkpoint last" in err and "re-run with --resume\n" not in err
    # the next command in this process gets the build's hint back
    monkeypatch.setattr("scenetg.commands.dataset._load_config", interrupted)
    assert main(["build", "--videos", str(tmp_path), "--out", str(tmp_path / "o")]) == 130
    assert "re-run with --resume" in capsys.readouterr().err


def test_loss_types_are_the_ones_trl_computes():
    from trl import GRPOTrainer

    from scenetg.rl.train import LOSS_TYPES

    source = inspect.getsource(GRPOTrainer._compute_loss)
    named = set(re.findall(r'self\.loss_type == "(\w+)"', source))
    for group in re.findall(r"self\.loss_type in \[([^\]]*)\]", source):
        named |= set(re.findall(r'"(\w+)"', group))
    assert set(LOSS_TYPES) == named
