"""Is OUT one consistent dataset? The single set of checks `scenetg inspect` and `publish` run.

A folder passes when the last export finished (no `INCOMPLETE` marker), the card's YAML header
and the shards on disk name the same splits, every shard has a SceneTG name and schema, each
split's shards form one complete `-of-N` set (old and new shards of an interrupted re-export do
not), `sample_id` is unique in `data/` and in `audit/`, and `data/` holds exactly the kept rows of
`audit/`. Problems that a re-export repairs say so (`scenetg export OUT` / `--resume`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from scenetg.curate.dataset.tables import AUDIT_SCHEMA, QUERY_SCHEMA, SPLIT_ORDER
from scenetg.curate.stages.export import INCOMPLETE
from scenetg.errors import ScenetgError
from scenetg.grounding.query_values import query_row_problems

SHARD_NAME = re.compile(r"^(?P<prefix>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")


def repair_hint(out: Path) -> str:
    """What repairs a folder whose export was interrupted or mixed: the work files are intact."""
    return f"re-run `scenetg export {out}` or the build with --resume"


def unfinished_export_problem(out_dir: str | Path) -> str | None:
    """One line when OUT holds the marker of an export killed mid-swap, else None."""
    out = Path(out_dir)
    if (out / INCOMPLETE).exists():
        return f"{out}: the last export did not finish; {repair_hint(out)}"
    return None


def read_card_header(out_dir: str | Path) -> dict[str, Any]:
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


def _shard_problems(out: Path, folder: str, prefixes: tuple[str, ...],
                    schema: pa.Schema) -> tuple[list[str], list[Path]]:
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
            problems.append(f"{folder}/{path.name}: not readable Parquet ({type(exc).__name__}); "
                            f"{repair_hint(out)}")
            continue
        if not ok:
            problems.append(f"{folder}/{path.name}: schema differs from the SceneTG {folder} schema")
            continue
        readable.append(path)
    for prefix, by_count in sorted(sets.items()):
        if len(by_count) > 1:
            counts = ", ".join(f"-of-{n:05d}" for n in sorted(by_count))
            problems.append(f"{folder}/{prefix}-*: shards of different exports ({counts}); an export "
                            f"was interrupted: {repair_hint(out)}")
            continue
        (count, indices), = by_count.items()
        missing = sorted(set(range(count)) - indices)
        extra = sorted(i for i in indices if i >= count)
        if missing:
            problems.append(f"{folder}/{prefix}-*: {len(missing)} of {count} shards missing "
                            f"(first: {prefix}-{missing[0]:05d}-of-{count:05d}.parquet); {repair_hint(out)}")
        if extra:
            problems.append(f"{folder}/{prefix}-*: shard index {extra[0]} beyond -of-{count:05d}; "
                            f"{repair_hint(out)}")
    return problems, readable


def _card_problems(out: Path, header: dict[str, Any], data_shards: list[Path]) -> list[str]:
    """Every split the card lists has files, and every split on disk is listed."""
    problems = []
    listed = set()
    for config in header.get("configs") or []:
        for spec in config.get("data_files") or []:
            listed.add(spec.get("path"))
            if not sorted(out.glob(str(spec.get("path")))):
                problems.append(f"README.md: split {spec.get('split')!r} names {spec.get('path')} "
                                "but no file matches")
    for split in sorted({SHARD_NAME.match(p.name)["prefix"] for p in data_shards}):
        if f"data/{split}-*" not in listed:
            problems.append(f"README.md: data/{split}-* shards are not listed in the card's configs")
    return problems


Located = tuple[str, dict[str, Any]]
"""A row and where it is (``data/train-00000-of-00001.parquet row 3``)."""


def _rows(shards: list[Path]) -> list[Located]:
    return [
        (f"{p.parent.name}/{p.name} row {i}", row)
        for p in shards for i, row in enumerate(pq.read_table(p).to_pylist())
    ]


def _value_problems(rows: list[Located]) -> list[str]:
    """`query_row_problems` of every row; a data row's split must be its shard's."""
    problems = []
    for where, row in rows:
        m = SHARD_NAME.match(where.split("/", 1)[1].split(" ")[0])
        shard_split = m["prefix"] if where.startswith("data/") and m else None
        problems += query_row_problems(row, where, shard_split)
    return problems


def _same(a: Any, b: Any) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def _audit_agreement_problems(data_rows: list[Located], audit_rows: list[Located]) -> list[str]:
    """Each data row has the values of the audit row it was exported from (same sample_id):
    an edited query or figure in one of them shows here."""
    audit = {row["sample_id"]: (where, row) for where, row in audit_rows}
    problems = []
    for where, row in data_rows:
        if row["sample_id"] not in audit:
            continue
        a_where, a_row = audit[row["sample_id"]]
        differ = [c for c in QUERY_SCHEMA.names if c in a_row and not _same(row.get(c), a_row[c])]
        if differ:
            problems.append(f"{where}: {', '.join(differ)} differ from {a_where} (same sample_id "
                            f"{row['sample_id']}); the data was edited after export")
    return problems


def dataset_problems(out_dir: str | Path) -> list[str]:
    """Everything that makes OUT an inconsistent dataset, one line each (empty list: consistent).

    An unfinished export, card header vs the splits on disk, shard names/schemas/`-of-N` sets,
    each row's values (`grounding.query_values`: times, figures, split vs shard, video paths),
    unique `sample_id` in `data/` and in `audit/`, `data/` holding exactly the kept rows of
    `audit/`, with the same values as there.
    """
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
    if not audit_shards and not audit_problems:
        problems.append(f"{out}: no audit/ shards; run `scenetg export {out}`")
    if header is not None:
        problems += _card_problems(out, header, data_shards)

    data_rows = _rows(data_shards)
    audit_rows = _rows(audit_shards)
    problems += _value_problems(data_rows) + _value_problems(audit_rows)
    problems += _audit_agreement_problems(data_rows, audit_rows)
    data_ids = [r["sample_id"] for _, r in data_rows]
    audit = [r for _, r in audit_rows]
    for where, ids in (("data/", data_ids), ("audit/", [r["sample_id"] for r in audit])):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        if dupes:
            problems.append(f"{where}: {len(dupes)} sample_id(s) appear more than once "
                            f"(e.g. {dupes[0]}); {repair_hint(out)}")
    if not data_problems and not audit_problems:
        kept = {r["sample_id"] for r in audit if r["kept"]}
        not_in_data, not_kept = len(kept - set(data_ids)), len(set(data_ids) - kept)
        if not_in_data or not_kept:
            problems.append(f"data/ and audit/ disagree: {not_in_data} kept queries missing from data/, "
                            f"{not_kept} rows of data/ not kept in audit/; re-run `scenetg export {out}`")
    return problems
