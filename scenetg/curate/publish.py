"""`scenetg publish OUT --repo-id USER/NAME`: push Parquet shards + dataset card to the Hub.

`validate_for_publish` runs first (and alone with `--dry-run`), so a broken folder is never pushed.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import yaml

from scenetg.errors import ScenetgError

# What goes to the Hub: the kept queries, the audit trail and the card (not the work files).
PUBLISH_PATTERNS = ["README.md", "data/*.parquet", "audit/*.parquet", "videos.parquet", "scenes.parquet"]


def validate_for_publish(out_dir: Path) -> list[Path]:
    """Check the card's YAML header and every shard it names; return the files to upload."""
    from scenetg.curate.export import QUERY_SCHEMA

    out = Path(out_dir)
    card = out / "README.md"
    if not card.is_file():
        raise ScenetgError(f"{out}: no README.md dataset card; run `scenetg export {out}`")
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise ScenetgError(f"{card}: no YAML header")
    header = yaml.safe_load(text[4 : text.index("\n---", 4)])
    configs = (header or {}).get("configs") or []
    if not configs:
        raise ScenetgError(f"{card}: YAML header names no configs")
    files: list[Path] = [card]
    for spec in configs[0].get("data_files", []):
        shards = sorted(out.glob(spec["path"]))
        if not shards:
            raise ScenetgError(f"{card}: split {spec['split']!r} names {spec['path']} but no file matches")
        for shard in shards:
            schema = pq.read_schema(shard)
            if not schema.equals(QUERY_SCHEMA, check_metadata=False):
                raise ScenetgError(f"{shard}: schema differs from the SceneTG query schema")
        files += shards
    for pattern in PUBLISH_PATTERNS[2:]:
        files += sorted(p for p in out.glob(pattern) if p not in files)
    return files


def publish(out_dir: Path, repo_id: str, private: bool = False, dry_run: bool = False) -> list[Path]:
    """Validate, then create the dataset repo (if needed) and upload in one commit."""
    files = validate_for_publish(out_dir)
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(out_dir),
        allow_patterns=PUBLISH_PATTERNS, commit_message="Upload SceneTG dataset",
    )
    return files
