"""`scenetg publish OUT --repo-id USER/NAME`: push Parquet shards + dataset card to the Hub.

`validate_for_publish` runs first (and alone with `--dry-run`), so a broken folder is never
pushed: it runs `dataset_checks.dataset_problems`, the same checks as `scenetg inspect`.
The upload is one commit of exactly the validated files; shards of an earlier publish that this
one does not have are deleted in the same commit, so the Hub never holds two exports mixed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from scenetg.curate.dataset.checks import dataset_problems
from scenetg.errors import ScenetgError

__all__ = ["dataset_problems", "publish", "validate_for_publish"]

TOP_FILES = ["videos.parquet", "scenes.parquet"]
"""Uploaded beside the card and the shards (not the work files, manifest or report)."""

SHARD_FOLDERS = ("data", "audit")
MAX_LISTED = 3
"""Problems named in the one-line error (the rest are counted)."""


def validate_for_publish(out_dir: Path) -> list[Path]:
    """Raise ScenetgError (one line) unless OUT is a consistent, non-empty dataset; return its files."""
    out = Path(out_dir)
    problems = dataset_problems(out)
    if problems:
        more = f" (+{len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise ScenetgError(f"{out} is not a consistent dataset: " + "; ".join(problems[:MAX_LISTED]) + more)
    data = sorted((out / "data").glob("*.parquet"))
    if not data:
        audit = pq.read_table(out / "audit", columns=["kept", "drop_reason"]).to_pylist()
        if not audit:
            raise ScenetgError(f"{out}: the build generated no queries (see `scenetg inspect {out}` for "
                               "failed videos); nothing to publish")
        reasons = Counter(r["drop_reason"] or "unknown" for r in audit)
        listed = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        raise ScenetgError(f"{out}: the filter kept 0 of {len(audit)} queries (dropped: {listed}), so there "
                           "is no data to publish; lower filter.min_margin or add videos, then rebuild")
    files = [out / "README.md", *data, *sorted((out / "audit").glob("*.parquet"))]
    return files + [out / name for name in TOP_FILES if (out / name).is_file()]


def publish(out_dir: Path, repo_id: str, private: bool = False, dry_run: bool = False) -> list[Path]:
    """Validate, then create the dataset repo (if needed) and upload in one commit.

    The token comes from huggingface_hub's usual places (`HF_TOKEN`, `hf auth login`) and is never
    put into a message; the endpoint from `HF_ENDPOINT`.
    """
    out = Path(out_dir)
    files = validate_for_publish(out)
    if dry_run:
        return files
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    names = [p.relative_to(out).as_posix() for p in files]
    api = HfApi()
    step = "create_repo"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        step = "list files"
        remote = api.list_repo_files(repo_id, repo_type="dataset")
        stale = [f for f in remote if f.split("/")[0] in SHARD_FOLDERS and f not in names]
        ops: list = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(p)) for n, p in zip(names, files, strict=True)]
        ops += [CommitOperationDelete(path_in_repo=f) for f in stale]
        step = "commit"
        api.create_commit(repo_id, repo_type="dataset", operations=ops,
                          commit_message=f"Upload SceneTG dataset ({len(names)} files)")
    except OfflineModeIsEnabled as exc:
        raise ScenetgError(f"publish to {repo_id} needs the network: HF_HUB_OFFLINE (or "
                           "TRANSFORMERS_OFFLINE) is set") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = " (check HF_TOKEN or `hf auth login`)" if status in (401, 403) else ""
        raise ScenetgError(f"publish to {repo_id}: the Hub answered HTTP {status} at {step}{hint}") from exc
    return files
