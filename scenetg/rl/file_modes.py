"""Checkpoint files get the mode the user's umask gives: TRL/transformers save model weights
through safetensors' 0600 temp file, so a ``checkpoint-N/`` on shared storage was unreadable to
the group even under umask 022 (`atomic_files.honour_umask_tree`)."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from scenetg.atomic_files import honour_umask_tree


class CheckpointModesCallback(TrainerCallback):
    """After each save, the new ``checkpoint-N/``'s files: 0666 & ~umask (main process)."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            honour_umask_tree(folder)
