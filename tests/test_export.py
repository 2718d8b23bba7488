"""Parquet export: schemas, splits, sharding, determinism, atomic writes, loading with `datasets`."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scenetg.config import ExportConfig
from scenetg.curate.dataset.checks import dataset_problems
from scenetg.curate.stages import export
from scenetg.curate.stages.export import (
    AUDIT_SCHEMA,
    QUERY_SCHEMA,
    SCENE_SCHEMA,
    VIDEO_SCHEMA,
    assign_split,
    read_audit,
    read_queries,
    sample_id,
    write_dataset,
    write_scenes_table,
    write_table_atomic,
    write_videos_table,
)

REASONS = ["ambiguous", "not_top1", "empty_caption"]


def make_rows(n_videos: int, scenes: int = 3, seed: int = 0) -> list[dict]:
    """Audit rows for ``n_videos`` videos; every third query dropped for some reason."""
    rnd = random.Random(seed)
    rows = []
    for v in range(n_videos):
        vid = f"set/video {v:03d}"
        for s in range(scenes):
            k = v * scenes + s
            kept = k % 3 != 1
            rows.append({
                "video_id": vid, "video_path": f"{vid}.mp4", "duration_s": 10.0 * scenes,
                "start_s": 10.0 * s, "end_s": 10.0 * s + 10.0, "scene_index": s,
                "query": f"a person does thing {k}", "caption_model": "tiny-qwen",
                "clip_model": "tiny-clip", "clip_self": round(rnd.random(), 6),
                "clip_best_other": round(rnd.random(), 6), "clip_margin": 0.1, "clip_rank": 1,
                "confusers": [s - 1] if s else [], "kept": kept,
                "drop_reason": None if kept else REASONS[(k // 3) % len(REASONS)],
            })
    return rows


def write(out: Path, rows: list[dict], **cfg) -> dict[str, list[Path]]:
    kept = [{k: v for k, v in r.items() if k not in ("kept", "drop_reason")} for r in rows if r["kept"]]
    return write_dataset(out, kept, rows, ExportConfig(**cfg), {"min_margin": 0.02})


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def card_header(out: Path) -> dict:
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:text.index("\n---", 4)])


# ----- schemas ------------------------------------------------------------------------------------
def test_query_and_audit_schemas_exact(tmp_path: Path) -> None:
    paths = write(tmp_path, make_rows(20))
    expected = [
        ("sample_id", pa.string()), ("video_id", pa.string()), ("video_path", pa.string()),
        ("duration_s", pa.float64()), ("start_s", pa.float64()), ("end_s", pa.float64()),
        ("scene_index", pa.int32()), ("query", pa.string()), ("caption_model", pa.string()),
        ("clip_model", pa.string()), ("clip_self", pa.float64()),
        ("clip_best_other", pa.float64()), ("clip_margin", pa.float64()),
        ("clip_rank", pa.int32()), ("confusers", pa.list_(pa.int32())), ("split", pa.string()),
    ]
    for split in ("train", "validation", "test"):
        for p in paths.get(split, []):
            schema = pq.read_schema(p)
            assert [(f.name, f.type) for f in schema] == expected
            assert schema.equals(QUERY_SCHEMA, check_metadata=False)
    schema = pq.read_schema(paths["audit"][0])
    assert [(f.name, f.type) for f in schema] == [*expected, ("kept", pa.bool_()),
                                                 ("drop_reason", pa.string())]
    assert schema.equals(AUDIT_SCHEMA, check_metadata=False)


def test_videos_and_scenes_tables(tmp_path: Path) -> None:
    videos = [
        {"video_id": "b", "path": "b.mp4", "duration_s": 12.5, "fps": 25.0, "width": 64,
         "height": 48, "n_frames": 312, "status": "ok", "error": None, "extra": 1},
        {"video_id": "a", "path": "a.mkv", "duration_s": None, "fps": None, "width": None,
         "height": None, "n_frames": None, "status": "error", "error": "a.mkv: no video stream"},
    ]
    p = write_videos_table(tmp_path, videos)
    assert p == tmp_path / "videos.parquet"
    assert [(f.name, f.type) for f in pq.read_schema(p)] == [
        ("video_id", pa.string()), ("path", pa.string()), ("duration_s", pa.float64()),
        ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
        ("n_frames", pa.int64()), ("status", pa.string()), ("error", pa.string())]
    assert pq.read_schema(p).equals(VIDEO_SCHEMA, check_metadata=False)
    assert pq.read_table(p).column("video_id").to_pylist() == ["a", "b"]

    scenes = [{"video_id": "a", "scene_index": i, "start_s": 5.0 * i, "end_s": 5.0 * i + 5,
               "start_frame": 125 * i, "end_frame": 125 * i + 125, "n_shots": 1,
               "keyframe_times": [5.0 * i + 2.5]} for i in (1, 0)]
    p = write_scenes_table(tmp_path, scenes)
    assert [(f.name, f.type) for f in pq.read_schema(p)] == [
        ("video_id", pa.string()), ("scene_index", pa.int32()), ("start_s", pa.float64()),
        ("end_s", pa.float64()), ("start_frame", pa.int64()), ("end_frame", pa.int64()),
        ("n_shots", pa.int32()), ("keyframe_times", pa.list_(pa.float64()))]
    assert pq.read_schema(p).equals(SCENE_SCHEMA, check_metadata=False)
    assert pq.read_table(p).column("scene_index").to_pylist() == [0, 1]


def test_missing_column_or_null_in_required_column_fails(tmp_path: Path) -> None:
    rows = make_rows(2)
    del rows[0]["clip_model"]
    with pytest.raises(ValueError, match="clip_model"):
        write(tmp_path, rows)
    rows = make_rows(2)
    rows[0]["query"] = None
    with pytest.raises(ValueError, match="query"):
        write(tmp_path, rows)


# ----- ids and splits -----------------------------------------------------------------------------
def test_sample_id_is_stable_and_distinct() -> None:
    sid = sample_id("set/video 000", 0, "a dog runs")
    assert len(sid) == 16 and int(sid, 16) >= 0
    assert sid == sample_id("set/video 000", 0, "a dog runs")
    assert sid == "cdb6cd9eee1c06a4"  # pinned: changing the hash changes every published id
    assert len({sid, sample_id("set/video 000", 1, "a dog runs"),
                sample_id("set/video 001", 0, "a dog runs"),
                sample_id("set/video 000", 0, "a dog walks")}) == 4


def test_assign_split_is_deterministic_and_follows_fractions() -> None:
    splits = {"train": 0.8, "validation": 0.1, "test": 0.1}
    ids = [f"v{i}" for i in range(4000)]
    got = [assign_split(v, splits, "s") for v in ids]
    assert got == [assign_split(v, dict(reversed(splits.items())), "s") for v in ids]
    counts = {s: got.count(s) for s in splits}
    assert 0.77 < counts["train"] / 4000 < 0.83
    assert 0.08 < counts["validation"] / 4000 < 0.12
    assert got != [assign_split(v, splits, "other salt") for v in ids]
    assert {assign_split(v, {"train": 1.0, "test": 0.0}, "s") for v in ids} == {"train"}
    with pytest.raises(ValueError):
        assign_split("v", {"dev": 1.0}, "s")


# ----- the dataset --------------------------------------------------------------------------------
def test_load_dataset_sees_the_card_splits(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    rows = make_rows(60)
    write(out, rows, rows_per_shard=7)
    header = card_header(out)
    card_splits = [d["split"] for d in header["configs"][0]["data_files"]]
    assert header["configs"][0]["config_name"] == "default"
    assert card_splits == ["train", "validation", "test"]

    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert list(ds) == card_splits
    kept = [r for r in rows if r["kept"]]
    assert sum(ds[s].num_rows for s in ds) == len(kept)
    for split in card_splits:
        expected = [r for r in kept if assign_split(r["video_id"], ExportConfig().splits,
                                                    "scenetg") == split]
        assert ds[split].num_rows == len(expected) > 0
        assert set(ds[split]["split"]) == {split}
    videos = {s: set(ds[s]["video_id"]) for s in ds}
    assert not videos["train"] & videos["validation"]
    assert not videos["train"] & videos["test"]
    assert not videos["validation"] & videos["test"]
    assert ds["train"].features["confusers"].feature.dtype == "int32"

    audit = datasets.load_dataset(str(out), "audit", split="audit", cache_dir=str(tmp_path / "cache"))
    assert audit.num_rows == len(rows)
    assert sorted(r for r in audit["drop_reason"] if r) == sorted(
        r["drop_reason"] for r in rows if not r["kept"])


def test_empty_split_is_not_listed_and_still_loads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    rows = make_rows(1)
    paths = write(tmp_path / "out", rows)
    only = assign_split(rows[0]["video_id"], ExportConfig().splits, "scenetg")
    assert [k for k in paths if k not in ("audit", "card")] == [only]
    header = card_header(tmp_path / "out")
    assert [d["split"] for d in header["configs"][0]["data_files"]] == [only]
    ds = datasets.load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    assert list(ds) == [only] and ds[only].num_rows == 2
    assert "not listed" in (tmp_path / "out" / "README.md").read_text()


def test_sharding_by_row_count_sorted(tmp_path: Path) -> None:
    rows = make_rows(10, scenes=3)  # 30 queries, 20 kept
    random.Random(1).shuffle(rows)
    paths = write(tmp_path, rows, rows_per_shard=3, splits={"train": 1.0})
    assert [p.name for p in paths["train"]] == [f"train-{i:05d}-of-00007.parquet" for i in range(7)]
    assert [pq.read_metadata(p).num_rows for p in paths["train"]] == [3, 3, 3, 3, 3, 3, 2]
    assert [p.name for p in paths["audit"]] == [f"queries-{i:05d}-of-00010.parquet" for i in range(10)]
    table = read_queries(tmp_path, "train")
    keys = list(zip(table.column("video_id").to_pylist(), table.column("scene_index").to_pylist(),
                    strict=True))
    assert keys == sorted(keys) and len(keys) == 20
    assert read_audit(tmp_path).num_rows == 30


def test_output_is_byte_identical(tmp_path: Path) -> None:
    rows = make_rows(30)
    write(tmp_path / "a", rows, rows_per_shard=5)
    shuffled = list(rows)
    random.Random(2).shuffle(shuffled)
    write(tmp_path / "b", shuffled, rows_per_shard=5)
    first = tree(tmp_path / "a")
    assert first == tree(tmp_path / "b")
    write(tmp_path / "a", rows, rows_per_shard=5)  # rewrite in place
    assert tree(tmp_path / "a") == first


def test_stale_shards_are_removed(tmp_path: Path) -> None:
    rows = make_rows(30)
    write(tmp_path, rows, rows_per_shard=2)
    (tmp_path / "data" / "notes.txt").write_text("mine")
    before = sorted(p.name for p in (tmp_path / "data").glob("*.parquet"))
    assert len(before) > 3
    paths = write(tmp_path, rows, rows_per_shard=1000, splits={"train": 0.5, "validation": 0.5})
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert names == sorted([p.name for s in ("train", "validation") for p in paths[s]] + ["notes.txt"])
    assert all("-of-00001" in n for n in names if n.endswith(".parquet"))
    assert [p.name for p in (tmp_path / "audit").iterdir()] == ["queries-00000-of-00001.parquet"]
    assert read_queries(tmp_path).num_rows == sum(r["kept"] for r in rows)


def test_video_in_two_splits_is_rejected(tmp_path: Path) -> None:
    rows = make_rows(2)
    for r in rows:
        r["split"] = "train"
    rows[0]["split"] = "test"
    with pytest.raises(ValueError, match="two splits"):
        write(tmp_path, rows)


def test_card_is_deterministic_and_readable_by_huggingface_hub(tmp_path: Path) -> None:
    rows = make_rows(12)
    write(tmp_path / "a", rows)
    write(tmp_path / "b", rows)
    text = (tmp_path / "a" / "README.md").read_text()
    assert text == (tmp_path / "b" / "README.md").read_text()
    header = card_header(tmp_path / "a")
    assert header["license"] and header["task_categories"] and header["tags"]
    assert header["configs"][1] == {"config_name": "audit",
                                    "data_files": [{"split": "audit", "path": "audit/queries-*"}]}
    kept = sum(r["kept"] for r in rows)
    assert f"| queries generated | {len(rows)} |" in text
    assert f"| queries kept | {kept} |" in text
    assert "| dropped: `ambiguous` |" in text and "δ = 0.02" in text
    assert 'load_dataset("USER/NAME")' in text and "| `clip_margin` | float64 |" in text
    hub = pytest.importorskip("huggingface_hub")
    card = hub.DatasetCard.load(tmp_path / "a" / "README.md")
    assert card.data.configs[0]["data_files"][0] == {"split": "train", "path": "data/train-*"}


# ----- atomic writes ------------------------------------------------------------------------------
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.parquet"
    good = pa.table({"x": pa.array([1, 2, 3], pa.int64())})
    write_table_atomic(good, path)
    before = path.read_bytes()

    original = pq.ParquetWriter.write_table

    def fail_midway(self, table, *args, **kwargs):
        original(self, table, *args, **kwargs)  # some bytes reach the temp file
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_table_atomic(pa.table({"x": pa.array([9] * 100, pa.int64())}), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_bad_rows_leave_the_dataset_untouched(tmp_path: Path) -> None:
    write(tmp_path, make_rows(5))
    before = tree(tmp_path)
    rows = make_rows(6, seed=3)  # different content: a partial rewrite would show
    rows[-1]["clip_rank"] = "first"  # not an int32 (the last row, in whichever split)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write(tmp_path, rows)
    assert tree(tmp_path) == before


def test_empty_table_is_written_without_row_groups(tmp_path: Path) -> None:
    p = write_table_atomic(QUERY_SCHEMA.empty_table(), tmp_path / "e.parquet")
    meta = pq.read_metadata(p)
    assert meta.num_rows == 0 and meta.num_row_groups == 0
    assert pq.read_schema(p).equals(QUERY_SCHEMA, check_metadata=False)


# ----- interrupted re-export ----------------------------------------------------------------------
def dataset_files(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(out).items() if k.startswith(("data/", "audit/")) or k == "README.md"}


def test_reexport_failing_midway_leaves_the_old_dataset_whole(tmp_path: Path, monkeypatch) -> None:
    """A full disk while rewriting shards with a new rows_per_shard: OUT keeps the old dataset,
    not old and new shards side by side (which `load_dataset` reads as duplicates)."""
    rows = make_rows(30)
    write(tmp_path, rows, rows_per_shard=1000)
    before = dataset_files(tmp_path)
    real = export.write_table_atomic
    calls = []

    def disk_fills_up(table, path):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return real(table, path)

    monkeypatch.setattr(export, "write_table_atomic", disk_fills_up)
    with pytest.raises(OSError, match="No space"):
        write(tmp_path, rows, rows_per_shard=2)
    monkeypatch.undo()
    assert dataset_files(tmp_path) == before
    assert dataset_problems(tmp_path) == []
    ids = read_queries(tmp_path).column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) == sum(r["kept"] for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "audit", "data"]


def test_a_kill_during_the_swap_is_reported_and_resume_repairs_it(tmp_path: Path, monkeypatch) -> None:
    from scenetg.curate.run import workdir

    rows = make_rows(30)
    write(tmp_path, rows, rows_per_shard=1000)
    real = workdir.os.rename
    calls = []

    def killed(src, dst):
        calls.append(src)
        if len(calls) == 3:  # data/ swapped, audit/ moved away, then the process dies
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(workdir.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, rows, rows_per_shard=2)
    monkeypatch.undo()
    problems = dataset_problems(tmp_path)
    assert len(problems) == 1 and "did not finish" in problems[0] and "--resume" in problems[0]
    write(tmp_path, rows, rows_per_shard=2)
    assert dataset_problems(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "audit", "data"]
    assert read_queries(tmp_path).num_rows == sum(r["kept"] for r in rows)


def test_validation_finds_mixed_shards_and_duplicate_ids(tmp_path: Path) -> None:
    rows = make_rows(30)
    write(tmp_path, rows, rows_per_shard=1000, splits={"train": 1.0})
    old = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    write(tmp_path, rows, rows_per_shard=4, splits={"train": 1.0})
    assert dataset_problems(tmp_path) == []
    for name, data in old.items():  # what an interrupted in-place rewrite used to leave
        (tmp_path / "data" / name).write_bytes(data)
    problems = dataset_problems(tmp_path)
    kept = sum(r["kept"] for r in rows)
    assert any("data/train-*: shards of different exports" in p and f"-of-00001, -of-{-(-kept // 4):05d}" in p
               for p in problems)
    assert any(f"data/: {kept} sample_id(s) appear more than once" in p for p in problems)
    assert all("--resume" in p and f"scenetg export {tmp_path}" in p for p in problems)
    (tmp_path / "data" / "train-00000-of-00001.parquet").unlink()
    (tmp_path / "data" / "train-00001-of-00015.parquet").unlink()  # a missing shard
    assert [p.split("; ")[0] for p in dataset_problems(tmp_path)] == [
        "data/train-*: 1 of 15 shards missing (first: train-00001-of-00015.parquet)"]
