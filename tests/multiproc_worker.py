"""`scenetg train` under `accelerate launch`, with what each rank did written down for
tests/test_multiprocess.py (not collected by pytest: it runs as a script, one copy per rank).

    accelerate launch --config_file pipelines/accelerate/cpu_2proc.yaml tests/multiproc_worker.py \
        --config RUN.yaml --record DIR [--replay DIR] [--resume]

It runs the real `scenetg.rl.train.train` and records, per rank, into ``DIR/rank{R}.json``:
- ``world_size``: torch.distributed's, as the trainer's accelerator sees it;
- ``rows``: the dataset rows each GRPO step handed this rank (qid, video path, duration, prompt);
- ``passes``: every model call that carried a video (rollout prefill, reference and policy
  log-prob passes): per row its token ids (padding dropped), a sha256 of its
  ``pixel_values_videos`` rows and its ``second_per_grid_ts``;
- ``completions``: each step's prompt and completion ids (what ``--replay`` feeds back);
- ``writes``: every file or folder this process created, replaced, renamed or removed under
  the run folder (Python's audit events, plus safetensors' writer and `torch.save`, which
  write from native code).

``--replay DIR`` makes rollouts return the completions another run recorded in DIR (its ranks'
lists concatenated in rank order, checked prompt by prompt), so a 1-process run can take the
same GRPO step as a 2-process one: sampling is the only part of a step that depends on how the
batch is split.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
from pathlib import Path


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class WriteLog:
    """Paths under `root` this process writes to (audit hooks cannot be removed: one per run)."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self, root: Path):
        self.root = str(Path(root).resolve()) + os.sep
        self.events: list[list[str]] = []
        sys.addaudithook(self._hook)

    def _under(self, path) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return None
        full = os.path.abspath(os.fspath(path))
        return full[len(self.root):] if (full + os.sep).startswith(self.root) else None

    def _hook(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & self.WRITE_FLAGS)
            rel = self._under(path) if writes else None
            if rel is not None:
                self.events.append(["write", rel])
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            rels = [self._under(a) for a in args[: 2 if event == "os.rename" else 1]]
            if all(r is not None for r in rels):
                self.events.append([event, *rels])

    def wrap_safetensors(self) -> None:
        import transformers.modeling_utils as mu

        original = mu.safe_save_file

        def save_file(tensors, filename, *a, **k):
            rel = self._under(filename)
            if rel is not None:
                self.events.append(["write", rel])
            return original(tensors, filename, *a, **k)

        mu.safe_save_file = save_file

    def wrap_torch_save(self) -> None:
        """`torch.save` to a path writes from C++ (optimizer, scheduler, RNG states): no audit event."""
        import torch

        original = torch.save

        def save(obj, f, *a, **k):
            rel = self._under(f) if isinstance(f, (str, os.PathLike)) else None
            if rel is not None:
                self.events.append(["write", rel])
            return original(obj, f, *a, **k)

        torch.save = save


def _row_record(ids, pixels, spgt, pad_id: int) -> dict:
    import numpy as np

    ids = [int(i) for i in ids.tolist() if int(i) != pad_id]
    digest = hashlib.sha256(np.ascontiguousarray(pixels.detach().float().cpu().numpy()).tobytes())
    return {"ids": ids, "pixels": digest.hexdigest(), "second_per_grid_ts": float(spgt)}


def _spgt(kwargs: dict, n: int) -> list:
    """The pass's ``second_per_grid_ts`` per row (NaN where the pass got none: the test fails)."""
    spgt = kwargs.get("second_per_grid_ts")
    return [float("nan")] * n if spgt is None else spgt.tolist()


def instrument(record: dict, replay: list | None) -> None:
    """Patch `VideoGRPOTrainer` (before `train` builds it) to record what this rank sees."""
    import torch

    from scenetg.rl.trainer import VideoGRPOTrainer

    init, gen_score, gen_turn = (VideoGRPOTrainer.__init__, VideoGRPOTrainer._generate_and_score_completions,
                                 VideoGRPOTrainer._generate_single_turn)

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        record["world_size"] = self.accelerator.num_processes
        record["torch_world_size"] = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        pad_id = self._tokenizer.pad_token_id
        for name, model in (("policy", self.model), ("reference", self.ref_model)):
            if model is None:
                continue

            # transformers' generate encodes the video before the prefill (`get_video_features`)
            # and hands the forward its features: take that call's pixels for the prefill row
            base, last_encoded = model.base_model, {}
            encode = base.get_video_features

            @functools.wraps(encode)
            def get_video_features(pixel_values_videos, video_grid_thw=None, *a, _encode=encode,
                                   _last=last_encoded, **k):
                _last["video"] = (pixel_values_videos, video_grid_thw)
                return _encode(pixel_values_videos, video_grid_thw, *a, **k)

            base.get_video_features = get_video_features

            def hook(module, args, kwargs, name=name, last=last_encoded):
                pixels, grid = kwargs.get("pixel_values_videos"), kwargs.get("video_grid_thw")
                if pixels is None:
                    if "video" not in (kwargs.get("mm_encoder_outputs") or {}) or "video" not in last:
                        return
                    pixels, grid = last.pop("video")
                parts = torch.split(pixels, grid.prod(-1).tolist(), dim=0)
                rows = [_row_record(ids, px, s, pad_id)
                        for ids, px, s in zip(kwargs["input_ids"], parts, _spgt(kwargs, len(parts)), strict=True)]
                record["passes"].append({"step": self.state.global_step, "model": name,
                                         "grad": torch.is_grad_enabled(), "rows": rows})

            model.register_forward_pre_hook(hook, with_kwargs=True)

    def _generate_and_score_completions(self, inputs):
        keep = ("qid", "video_path", "duration_s", "prompt")
        record["rows"].append({"step": self.state.global_step, "rows": [{k: r[k] for k in keep} for r in inputs]})
        return gen_score(self, inputs)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs):
        step = self.state.global_step
        if replay is not None and step < len(replay):
            want = replay[step]
            if [list(p) for p in prompt_ids] != want["prompt_ids"]:
                raise RuntimeError(f"step {step}: prompts differ from the recorded run's")
            out = want["completion_ids"], None
        else:
            out = gen_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs)
        record["completions"].append({"step": step, "prompt_ids": [list(p) for p in prompt_ids],
                                      "completion_ids": [list(c) for c in out[0]]})
        return out

    VideoGRPOTrainer.__init__ = __init__
    VideoGRPOTrainer._generate_and_score_completions = _generate_and_score_completions
    VideoGRPOTrainer._generate_single_turn = _generate_single_turn


def load_replay(folder: Path) -> list:
    """Per step, the recorded ranks' prompts and completions concatenated in rank order."""
    ranks = sorted(folder.glob("rank*.json"), key=lambda p: int(p.stem[4:]))
    recs = [json.loads(p.read_text()) for p in ranks]
    steps = []
    for i in range(min(len(r["completions"]) for r in recs)):
        steps.append({key: [x for r in recs for x in r["completions"][i][key]]
                      for key in ("prompt_ids", "completion_ids")})
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--record", required=True, type=Path)
    parser.add_argument("--replay", type=Path)
    parser.add_argument("--resume", action="store_true")
    opts = parser.parse_args(argv)

    from scenetg.rl.config import load_train_config

    cfg = load_train_config(opts.config)
    writes = WriteLog(Path(cfg.output_dir))
    writes.wrap_safetensors()
    writes.wrap_torch_save()
    record: dict = {"rank": _rank(), "rows": [], "passes": [], "completions": []}
    instrument(record, load_replay(opts.replay) if opts.replay else None)

    from scenetg.rl.train import train

    summary = train(cfg, resume_from_checkpoint="last" if opts.resume else None)
    record["steps"] = summary.steps
    record["writes"] = writes.events
    opts.record.mkdir(parents=True, exist_ok=True)
    (opts.record / f"rank{record['rank']}.json").write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
