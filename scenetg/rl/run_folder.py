"""The training run folder belongs to one run.

`claim_run_folder` runs after every check of the config and data, under the folder's lock
(`scenetg.folder_lock`, the build's OUT lock): a folder that holds a run (``config.yaml``,
``checkpoint-N/``, ``final/``, ``metrics.jsonl``) is refused unless the user passes
``--overwrite`` (its run files are removed; the frame cache is kept: it is keyed by file and
sampling) or ``--resume-from-checkpoint`` (the checkpoint's run must have this config, apart from
`RESUME_FREE_KEYS`). Only then is ``config.yaml`` written. Under ``accelerate launch`` only the
main process takes the lock and writes; the other ranks share the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from scenetg.atomic_files import write_bytes_atomic
from scenetg.errors import ConfigError

OUTPUT_FLAG = "output_dir (--output-dir)"
RESUME_FLAG = "--resume-from-checkpoint"
CONFIG_FILE = "config.yaml"
RUN_FILES = ("config.yaml", "metrics.jsonl", "curves.png", "final", "final.tmp", "runs")
"""What a run writes besides ``checkpoint-N/`` (``runs/``: TensorBoard logs)."""
CHECKPOINT = re.compile(r"^checkpoint-\d+$")
RESUME_FREE_KEYS = frozenset({
    "output_dir", "frame_cache", "data.video_root",
    "grpo.max_steps", "grpo.num_train_epochs", "grpo.save_steps", "grpo.save_total_limit",
    "grpo.logging_steps", "grpo.report_to", "grpo.logging_dir",
})
"""Config keys a resumed run may change: where things are, how long it runs, what it logs."""
MAX_LISTED = 6


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (accelerate / torchrun set
    ``RANK``; ``LOCAL_RANK`` where only it is set)."""
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    try:
        return int(rank) == 0
    except ValueError:
        return True


def run_files(out: Path) -> list[str]:
    """The run artefacts in `out`, sorted (empty for a missing or fresh folder)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name in RUN_FILES or CHECKPOINT.match(p.name))


def check_output_dir(out: Path) -> None:
    """ConfigError when `out` or a parent of it is a file."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            what = "exists and is not a folder" if path == out else f"has a parent {path} that is not a folder"
            raise ConfigError(f"{OUTPUT_FLAG}: {out} {what}")
        if path.exists():
            return


def resume_point(out: Path, value: str | bool | None) -> Path | None:
    """The checkpoint folder to resume from (``last``/``latest``/True: the newest in `out`),
    checked: a folder with a readable ``trainer_state.json``. ConfigError naming the path."""
    if value in (None, False, ""):
        return None
    if value in ("last", "latest", True):
        found = sorted(
            (p for p in out.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)),
            key=lambda p: int(p.name.split("-")[1]),
        ) if out.is_dir() else []
        if not found:
            raise ConfigError(f"{RESUME_FLAG}: no checkpoint-N folder in {out}")
        checkpoint = found[-1]
    else:
        checkpoint = Path(str(value)).expanduser()
        if not checkpoint.is_dir():
            raise ConfigError(f"{RESUME_FLAG}: {checkpoint}: no such checkpoint folder")
    checkpoint_step(checkpoint)
    return checkpoint


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint was saved at (its ``trainer_state.json``); ConfigError naming the
    file when it is missing or unreadable."""
    state = checkpoint / "trainer_state.json"
    try:
        return int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
    except FileNotFoundError:
        raise ConfigError(f"{RESUME_FLAG}: {state}: missing (not a training checkpoint)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"{RESUME_FLAG}: {state}: unreadable ({reason})") from None


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``grpo.max_steps``)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flat(value, name) if isinstance(value, dict) and value else {name: value})
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, less `RESUME_FREE_KEYS`."""
    a, b = flat(saved), flat(yaml.safe_load(yaml.safe_dump(current)))  # tuples -> lists, as saved
    keys = sorted(k for k in set(a) | set(b) if k not in RESUME_FREE_KEYS and a.get(k, ...) != b.get(k, ...))
    return keys


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def check_resume_config(checkpoint: Path, config: dict[str, Any]) -> None:
    """The run a checkpoint belongs to (its folder's ``config.yaml``) must be this config."""
    saved_path = checkpoint.parent / CONFIG_FILE
    saved = _read_config(saved_path)
    if saved is None:
        raise ConfigError(
            f"{RESUME_FLAG}: {saved_path}: missing or unreadable, so {checkpoint.name} cannot be "
            f"checked against this config; not resuming a run of unknown settings"
        )
    differ = config_differences(saved, config)
    if differ:
        listed = ", ".join(differ[:MAX_LISTED]) + (f" and {len(differ) - MAX_LISTED} more" if len(differ) > MAX_LISTED else "")
        raise ConfigError(
            f"{RESUME_FLAG}: {checkpoint} was trained with another config ({listed} differ from "
            f"{saved_path}); resume with that config, or start a new run in another output_dir"
        )


def claim_run_folder(
    out: Path, config: dict[str, Any], checkpoint: Path | None = None, overwrite: bool = False
) -> None:
    """Make `out` this run's folder (call under its lock, on the main process, before the model
    loads): ConfigError when it holds another run and neither `overwrite` (its run files are
    removed) nor a `checkpoint` of a run with this config says what to do with it."""
    check_output_dir(out)
    existing = run_files(out)
    if checkpoint is not None:
        check_resume_config(checkpoint, config)
        if existing and checkpoint.parent.resolve() != out.resolve():
            if not overwrite:
                raise ConfigError(
                    f"{OUTPUT_FLAG}: {out} holds another run ({_listed(existing)}), not the one "
                    f"{checkpoint} belongs to; pass --overwrite to replace it, or another output_dir"
                )
            clear_run(out, existing)
    elif existing:
        if not overwrite:
            raise ConfigError(
                f"{OUTPUT_FLAG}: {out} holds a run already ({_listed(existing)}); pass "
                f"--resume-from-checkpoint last to continue it, --overwrite to replace it, or "
                f"another output_dir"
            )
        clear_run(out, existing)


def write_run_config(out: Path, config: dict[str, Any]) -> Path:
    """``config.yaml``: written once the model has loaded and the trainer accepted the settings,
    so a run that fails its checks leaves the folder as it was."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / CONFIG_FILE
    write_bytes_atomic(target, yaml.safe_dump(config, sort_keys=False).encode())
    return target


def clear_run(out: Path, names: list[str]) -> None:
    """Remove a previous run's files (`run_files`) from `out`; anything else there stays."""
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more
