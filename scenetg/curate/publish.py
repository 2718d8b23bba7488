"""`scenetg publish OUT --repo-id USER/NAME`: push Parquet shards + dataset card to the Hub.

`validate_for_publish` runs first (and alone with `--dry-run`), so a broken folder is never
pushed: the card's YAML header, every shard's schema, `-of-N` shard sets from one export,
unique `sample_id`s, and `data/` agreeing with the kept rows of `audit/` (`dataset_problems`).
The upload is one commit of exactly the validated files; shards of an earlier publish that this
one does not have are deleted in the same commit, so the Hub never holds two exports mixed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from scenetg.errors import ScenetgError

TOP_FILES = ["videos.parquet", "scenes.parquet"]
"""Uploaded beside the card and the shards (not the work files, manifest or report)."""

SHARD_FOLDERS = ("data", "audit")
SHARD_NAME = re.compile(r"^(?P<prefix>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
MAX_LISTED = 3
"""Problems named in the one-line error (the rest are counted)."""


def read_card_header(out_dir: Path) -> dict[str, Any]:
    """The YAML header of OUT/README.md; ScenetgError when there is none."""
    card = Path(out_dir) / "README.md"
    if not card.is_file():
        raise ScenetgError(f"{out_dir}: no README.md dataset card; run `scenetg export {out_dir}`")
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise ScenetgError(f"{card}: no YAML header")
    try:
        header = yaml.safe_load(text[4 : text.index("\n---", 4)])
    except yaml.YAMLError as exc:
        raise ScenetgError(f"{card}: YAML header does not parse ({type(exc).__name__})") from exc
    return header if isinstance(header, dict) else {}


def _shard_problems(out: Path, folder: str, prefixes: tuple[str, ...], schema) -> tuple[list[str], list[Path]]:
    """Names, schemas and `-of-N` sets of one shard folder; returns (problems, readable shards)."""
    problems: list[str] = []
    readable: list[Path] = []
    sets: dict[str, dict[int, set[int]]] = {}
    for path in sorted((out / folder).glob("*.parquet")):
        m = SHARD_NAME.match(path.name)
        if not m or m["prefix"] not in prefixes:
            problems.append(f"{folder}/{path.name}: not a shard name SceneTG writes")
            continue
        sets.setdefault(m["prefix"], {}).setdefault(int(m["count"]), set()).add(int(m["index"]))
        try:
            ok = pq.read_schema(path).equals(schema, check_metadata=False)
        except Exception as exc:  # any unreadable file is a problem to report, not a crash
            problems.append(f"{folder}/{path.name}: not readable Parquet ({type(exc).__name__})")
            continue
        if not ok:
            problems.append(f"{folder}/{path.name}: schema differs from the SceneTG {folder} schema")
            continue
        readable.append(path)
    for prefix, by_count in sorted(sets.items()):
        if len(by_count) > 1:
            counts = ", ".join(f"-of-{n:05d}" for n in sorted(by_count))
            problems.append(f"{folder}/{prefix}-*: shards of different exports ({counts}); an export "
                            "was interrupted: re-run `scenetg export OUT` or the build with --resume")
            continue
        (count, indices), = by_count.items()
        missing = sorted(set(range(count)) - indices)
        extra = sorted(i for i in indices if i >= count)
        if missing:
            problems.append(f"{folder}/{prefix}-*: {len(missing)} of {count} shards missing "
                            f"(first: {prefix}-{missing[0]:05d}-of-{count:05d}.parquet)")
        if extra:
            problems.append(f"{folder}/{prefix}-*: shard index {extra[0]} beyond -of-{count:05d}")
    return problems, readable


def _duplicates(ids: list[str]) -> list[str]:
    return sorted(i for i, n in Counter(ids).items() if n > 1)


def dataset_problems(out_dir: Path) -> list[str]:
    """Everything that makes OUT an inconsistent dataset, one line each (empty list: consistent).

    Card header vs the splits on disk, shard names/schemas/`-of-N` sets, unique `sample_id` in
    `data/` and in `audit/`, and `data/` holding exactly the kept rows of `audit/`.
    """
    from scenetg.curate.export import (
        AUDIT_SCHEMA,
        QUERY_SCHEMA,
        SPLIT_ORDER,
        unfinished_export_problem,
    )

    out = Path(out_dir)
    problems: list[str] = [p for p in [unfinished_export_problem(out)] if p]
    try:
        header = read_card_header(out)
    except ScenetgError as exc:
        problems.append(str(exc))
        header = None
    data_problems, data_shards = _shard_problems(out, "data", SPLIT_ORDER, QUERY_SCHEMA)
    audit_problems, audit_shards = _shard_problems(out, "audit", ("queries",), AUDIT_SCHEMA)
    problems += data_problems + audit_problems
    if not (out / "audit").is_dir() or not list((out / "audit").glob("*.parquet")):
        problems.append(f"{out}: no audit/ shards; run `scenetg export {out}`")

    if header is not None:
        listed = {}
        for config in header.get("configs") or []:
            for spec in config.get("data_files") or []:
                listed[spec.get("path")] = (config.get("config_name"), spec.get("split"))
                if not sorted(out.glob(str(spec.get("path")))):
                    problems.append(f"README.md: split {spec.get('split')!r} names {spec.get('path')} "
                                    "but no file matches")
        on_disk = sorted({SHARD_NAME.match(p.name)["prefix"] for p in data_shards})
        for split in on_disk:
            if f"data/{split}-*" not in listed:
                problems.append(f"README.md: data/{split}-* shards are not listed in the card's configs")

    data_ids = [i for p in data_shards for i in pq.read_table(p, columns=["sample_id"])["sample_id"].to_pylist()]
    audit = [r for p in audit_shards for r in pq.read_table(p, columns=["sample_id", "kept"]).to_pylist()]
    for where, ids in (("data/", data_ids), ("audit/", [r["sample_id"] for r in audit])):
        dupes = _duplicates(ids)
        if dupes:
            problems.append(f"{where}: {len(dupes)} sample_id(s) appear more than once (e.g. {dupes[0]})")
    if not data_problems and not audit_problems:
        kept = {r["sample_id"] for r in audit if r["kept"]}
        not_in_data, not_kept = len(kept - set(data_ids)), len(set(data_ids) - kept)
        if not_in_data or not_kept:
            problems.append(f"data/ and audit/ disagree: {not_in_data} kept queries missing from data/, "
                            f"{not_kept} rows of data/ not kept in audit/; re-run `scenetg export {out}`")
    return problems


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
