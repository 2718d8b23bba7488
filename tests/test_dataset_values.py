"""One validator for a dataset's values (`grounding.query_values`): `inspect` and `publish`
(`dataset_problems`) and the training data loader refuse the same bad row, naming its shard and
row."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scenetg.cli import main
from scenetg.curate.dataset.checks import dataset_problems
from scenetg.errors import ScenetgError
from scenetg.grounding.query_values import query_row_problems, unsafe_relative_path
from scenetg.rl.config import DataConfig
from scenetg.rl.train_data import load_training_data
from tests.test_publish import audit_rows, make_dataset

ROW = 1


def _edit(shard: Path, column: str, value) -> None:
    """Rewrite one value of row `ROW` of `shard`, keeping its schema."""
    table = pq.read_table(shard)
    i = table.schema.get_field_index(column)
    values = table[column].to_pylist()
    values[ROW] = value
    field = table.schema.field(i)
    pq.write_table(table.set_column(i, field, pa.array(values, type=field.type)), shard)


@pytest.fixture
def dataset(tmp_path):
    out = make_dataset(tmp_path / "out", audit_rows())
    shard = sorted((out / "data").glob("train-*.parquet"))[0]
    assert pq.read_table(shard).num_rows > ROW
    assert dataset_problems(out) == []  # the untouched folder passes
    return out, shard


CASES = [
    # column, value, what the problem says
    ("start_s", 999.0, "start_s 999 is not < end_s"),
    ("end_s", math.nan, "end_s nan is not finite"),
    ("duration_s", -5.0, "duration_s -5 is not > 0"),
    ("split", "test", "split 'test' but the shard is the 'train' split"),
    ("video_id", "../../etc/passwd", "video_id '../../etc/passwd' has a '..'"),
    ("video_path", "/etc/passwd", "video_path '/etc/passwd' is absolute"),
]


@pytest.mark.parametrize(("column", "value", "says"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_value_is_refused_by_inspect_publish_and_training(dataset, tmp_path, capsys, column, value, says):
    out, shard = dataset
    _edit(shard, column, value)
    where = f"data/{shard.name} row {ROW}: "

    problems = dataset_problems(out)
    assert any(p.startswith(where) and says in p for p in problems), problems

    assert main(["publish", str(out), "--repo-id", "me/demo", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert says in err and f"{shard.name} row {ROW}" in err and "would upload" not in err

    assert main(["inspect", str(out)]) != 0
    assert says in capsys.readouterr().err

    with pytest.raises(ScenetgError) as caught:
        load_training_data(DataConfig(dataset=str(out), video_root=str(tmp_path), split="train"))
    assert says in str(caught.value) and f"{shard.name}: row {ROW}" in str(caught.value)


def test_a_data_row_edited_after_export_disagrees_with_its_audit_row(dataset, capsys):
    out, shard = dataset
    _edit(shard, "query", "an edited query")
    problems = dataset_problems(out)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"data/{shard.name} row {ROW}: query differ from audit/queries-")
    assert main(["publish", str(out), "--repo-id", "me/demo", "--dry-run"]) == 2
    assert "query differ from audit" in capsys.readouterr().err


def test_row_rules_at_their_edges():
    ok = {"duration_s": 10.0, "start_s": 0.0, "end_s": 10.0, "video_id": "dir/a b", "video_path": "dir/a b.mp4",
          "clip_self": 0.5, "clip_best_other": None, "clip_margin": None, "split": "train"}
    assert query_row_problems(ok, "r", "train") == []  # end == duration, start == 0, nullable figures
    assert query_row_problems({**ok, "end_s": 10.0 + 1e-3}, "r") == ["r: end_s 10.001 is > duration_s 10"]
    assert query_row_problems({**ok, "start_s": -0.5}, "r") == ["r: start_s -0.5 is < 0"]
    assert query_row_problems({**ok, "start_s": 10.0}, "r") == ["r: start_s 10 is not < end_s 10"]
    assert query_row_problems({**ok, "clip_self": None}, "r") == ["r: clip_self is null"]
    assert query_row_problems({**ok, "clip_margin": math.inf}, "r") == ["r: clip_margin inf is not finite"]
    assert query_row_problems({**ok, "duration_s": True}, "r") == ["r: duration_s True is not a number"]
    for bad in ("", "a\\b", "/abs", "C:/x", "a/../b", "./a", "a//b", "a\x00b", ".."):
        assert unsafe_relative_path(bad), bad
    for good in ("a", "charades/3MSZA", "ünï cödé/clip 1", "a..b"):
        assert unsafe_relative_path(good) is None, good
