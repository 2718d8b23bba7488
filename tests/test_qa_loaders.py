"""QA loaders on the files as the benchmarks distribute them (MLVU JSON, Video-MME Parquet)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scenetg.cli import main
from scenetg.eval.answering import summarize_answers
from scenetg.eval.qa_loaders import NO_ANSWER, load_qa, load_qa_report


def _needle(n: int = 4) -> list[dict]:
    """MLVU `2_needle.json` layout; items 1 and 3 have an answer outside their candidates, as
    two items of the official file do."""
    items = []
    for i in range(n):
        items.append({
            "video": f"needle_{i}.mp4", "duration": 420.5,
            "question": "What does the hand hold?",
            "candidates": ["a cup", "a pen", "a key", "a phone"],
            "answer": "a pen" if i % 2 == 0 else "a spoon",
            "question_type": "needle",
        })
    return items


def test_mlvu_answer_not_among_candidates_is_kept_and_scored_wrong(tmp_path):
    path = tmp_path / "2_needle.json"
    path.write_text(json.dumps(_needle()))
    records, report = load_qa_report(path)
    assert len(records) == 4  # no question of the task is lost
    assert [r.answer_index for r in records] == [1, NO_ANSWER, 1, NO_ANSWER]
    assert report.no_answer == 2 and report.n_records == 4
    assert "2 of 4 questions" in report.summary() and "'a spoon'" in report.summary()
    with pytest.warns(UserWarning, match="2 of 4 questions have an answer that is not among"):
        assert len(load_qa(path)) == 4
    # whatever the model picks, such a question counts as wrong
    rows = {r.qid: {"correct_gta": c == r.answer_index, "correct_uniform": c == r.answer_index}
            for r in records for c in [1]}
    summary = summarize_answers(records, rows)
    assert summary["n"] == 4 and summary["accuracy_gta"] == 50.0


def test_answer_command_warns_about_unanswerable_items(tmp_path, capsys):
    path = tmp_path / "2_needle.json"
    path.write_text(json.dumps(_needle()))
    # no video folder: the command stops after loading, but the warning is already out
    main(["answer", "--qa", str(path), "--videos", str(tmp_path / "none"),
          "--out", str(tmp_path / "rows.jsonl"), "--answerer", "x"])
    assert "warning: " in capsys.readouterr().err


def test_videomme_parquet_as_distributed(tmp_path):
    """lmms-lab/Video-MME `videomme/test-00000-of-00001.parquet`: these columns and types."""
    rows = [
        {"video_id": "001", "duration": "short", "domain": "Knowledge",
         "sub_category": "Humanity & History", "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
         "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
         "question": "When demonstrating the Germany modern Christmas tree is initially decorated "
                     "with apples, candles and berries, which kind of the decoration has the "
                     "largest number?",
         "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are of the "
                     "same number."],
         "answer": "C"},
        {"video_id": "601", "duration": "long", "domain": "Film & Television",
         "sub_category": "Movie", "url": "https://www.youtube.com/watch?v=xyz", "videoID": "xyz",
         "question_id": "601-3", "task_type": "Action Reasoning", "question": "Why?",
         "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "D"},
    ]
    schema = pa.schema([(k, pa.list_(pa.string()) if k == "options" else pa.string())
                        for k in rows[0]])
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    records = load_qa(path)
    assert [(r.qid, r.video_id, r.answer_index, r.duration_group) for r in records] == [
        ("001-1", "fFjv93ACGo8", 2, "short"),
        ("601-3", "xyz", 3, "long"),
    ]
    assert records[0].options[3] == "The three kinds are of the same number."


def test_qa_file_not_utf8_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "mlvu.json"
    path.write_bytes(b'[{"video": "a.mp4", "question": "caf\xe9", "candidates": ["x"], "answer": "x"}]')
    assert main(["answer", "--qa", str(path), "--videos", str(tmp_path), "--out",
                 str(tmp_path / "o.jsonl"), "--answerer", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: not UTF-8" in err
