"""Ground-then-Answer: QA loaders, answer windows, the two arms, summary and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenetg.errors import ConfigError, ScenetgError
from scenetg.eval import answering as A
from scenetg.grounding.prompts import mcq_prompt, span_times
from scenetg.video.synthetic import write_synthetic_video

SPAN_ANSWER = "<think>there</think><answer>1.0 - 2.5</answer>"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qa_videos")
    write_synthetic_video(root / "a.mp4", [2.0, 2.0], fps=10, size=(64, 48))
    (root / "sub").mkdir()
    write_synthetic_video(root / "sub" / "b.mp4", [1.5, 1.5], fps=10, size=(64, 48), seed=1)
    return root


def _write(path: Path, obj) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(o) + "\n" for o in obj))
    else:
        path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------------------ loaders


def test_load_videomme_flat_nested_and_parquet(tmp_path):
    flat = [
        {
            "video_id": "001",
            "videoID": "a",
            "duration": "short",
            "question_id": "001-1",
            "question": "What colour is the first scene?",
            "options": ["A. Green.", "B. Blue.", "C. Red.", "D. Grey."],
            "answer": "B",
        },
        {
            "video_id": "002",
            "duration": "long",
            "question": "How many scenes?",
            "options": ["A. One", "B. Two", "C. Three", "D. Four"],
            "answer": "b",
        },
    ]
    recs = A.load_qa(_write(tmp_path / "vmme.json", flat))
    assert [r.qid for r in recs] == ["001-1", "002-1"]
    assert recs[0].video_id == "a" and recs[1].video_id == "002"  # videoID names the file
    assert recs[0].options == ["Green.", "Blue.", "Red.", "Grey."]
    assert [r.answer_index for r in recs] == [1, 1]
    assert [r.duration_group for r in recs] == ["short", "long"]

    nested = [
        {
            "video_id": "003",
            "duration": "medium",
            "questions": [
                {"question": "q1?", "options": ["A. x", "B. y"], "answer": "A"},
                {"question_id": "003-9", "question": "q2?", "options": ["x", "y"], "answer": "y"},
            ],
        }
    ]
    recs = A.load_qa(_write(tmp_path / "nested.json", nested), format="video-mme")
    assert [(r.qid, r.answer_index, r.duration_group) for r in recs] == [
        ("003-1", 0, "medium"),
        ("003-9", 1, "medium"),
    ]

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(flat)
    pq.write_table(table, tmp_path / "vmme.parquet")
    assert [r.qid for r in A.load_qa(tmp_path / "vmme.parquet")] == ["001-1", "002-1"]


def test_load_longvideobench_both_layouts(tmp_path):
    items = [
        {
            "id": "lvb1",
            "video_id": "a",
            "question": "Which colour?",
            "candidates": ["red", "green", "blue"],
            "correct_choice": 2,
            "duration": 4.0,
        },
        {
            "video_id": "sub/b",
            "question": "Which shape?",
            "option0": "box",
            "option1": "ball",
            "option2": "cone",
            "option3": "N/A",
            "option4": None,
            "correct_choice": "B",
            "duration_group": 15,
        },
        {
            "video_id": "c",
            "question": "Long?",
            "option0": "yes",
            "option1": "no",
            "correct_choice": 0,
            "duration": 1800,
        },
    ]
    recs = A.load_qa(_write(tmp_path / "lvb.jsonl", items))
    assert [r.qid for r in recs] == ["lvb1", "sub/b_1", "c_2"]
    assert recs[1].options == ["box", "ball", "cone"]
    assert [r.answer_index for r in recs] == [2, 1, 0]
    assert [r.duration_group for r in recs] == ["short", "<=15s", "long"]
    assert recs[0].duration_s == 4.0


def test_load_mlvu(tmp_path):
    items = [
        {
            "video": "a.mp4",
            "duration": 500,
            "question": "What happens?",
            "candidates": ["a box moves", "nothing", "it rains"],
            "answer": "nothing",
            "question_type": "plotQA",
        },
        {
            "video_name": "sub/b.mp4",
            "duration": 100,
            "question": "Which?",
            "candidates": ["x", "y"],
            "answer": "Y",
        },
    ]
    recs = A.load_qa(_write(tmp_path / "mlvu.json", items))
    assert [(r.qid, r.video_id, r.answer_index, r.duration_group) for r in recs] == [
        ("a_0", "a", 1, "medium"),
        ("sub/b_1", "sub/b", 1, "short"),
    ]
    # a JSON object holding one list (MLVU's per-task files are sometimes wrapped)
    assert len(A.load_qa(_write(tmp_path / "wrapped.json", {"data": items}))) == 2


def test_load_qa_errors(tmp_path):
    bad = [{"video_id": "a", "question": "q", "options": ["x", "y"], "answer": "z"}]
    with pytest.raises(ScenetgError, match=r"item 0: answer 'z' is not one of the 2 options"):
        A.load_qa(_write(tmp_path / "bad.json", bad))  # Video-MME: a malformed file
    dup = [
        {"video_id": "a", "question": "q", "options": ["x"], "answer": "A", "question_id": "1"},
        {"video_id": "a", "question": "q", "options": ["x"], "answer": "A", "question_id": "1"},
    ]
    with pytest.raises(ScenetgError, match="duplicate"):
        A.load_qa(_write(tmp_path / "dup.json", dup))
    with pytest.raises(ScenetgError, match="missing field 'question'"):
        A.load_qa(
            _write(tmp_path / "noq.jsonl", [{"video_id": "a", "options": ["x"], "answer": "A"}])
        )
    with pytest.raises(ScenetgError, match="cannot tell"):
        A.load_qa(_write(tmp_path / "what.json", [{"foo": 1}]))
    with pytest.raises(ScenetgError, match="'C' is not one of the 1 options"):
        A.load_qa(
            _write(
                tmp_path / "oor.json",
                [{"video_id": "a", "question": "q", "options": ["x"], "answer": "C"}],
            )
        )
    with pytest.raises(ScenetgError, match="not found"):
        A.load_qa(tmp_path / "nope.json")
    (tmp_path / "broken.jsonl").write_text('{"video_id": "a"\n')
    with pytest.raises(ScenetgError, match=r"broken.jsonl:1"):
        A.load_qa(tmp_path / "broken.jsonl")


def test_duration_group_and_answer_window():
    assert [A.duration_group(x) for x in (None, 60, 239.9, 240, 900, 901)] == [
        "unknown",
        "short",
        "short",
        "medium",
        "medium",
        "long",
    ]
    assert A.answer_window((1.0, 2.5), 4.0, 0.5, 0.0) == pytest.approx((0.25, 3.25))
    assert A.answer_window((1.0, 2.0), 4.0, 0.0, 5.0) == pytest.approx((0.0, 4.0))
    assert A.answer_window((3.0, 10.0), 4.0, 0.0, 0.0) == pytest.approx((3.0, 4.0))  # clipped
    assert A.answer_window((2.0, 2.0), 4.0) is None  # empty
    assert A.answer_window((3.0, 1.0), 4.0) is None  # reversed
    assert A.answer_window((5.0, 9.0), 4.0) is None  # all past the end
    assert A.answer_window(None, 4.0) is None


# ------------------------------------------------------------------------------- answer


class FakeMLLM:
    """Answers grounding prompts with a span and multiple-choice prompts with a letter."""

    def __init__(self, letter: str = "B", span: str = SPAN_ANSWER):
        self.letter, self.span = letter, span
        self.calls: list[dict] = []

    def generate(self, videos, times_s, prompts, durations_s, max_new_tokens=None):
        self.calls.append(
            {
                "times": [list(t) for t in times_s],
                "prompts": list(prompts),
                "durations": list(durations_s),
                "max_new_tokens": max_new_tokens,
            }
        )
        return [self.span if "<answer>" in p else self.letter for p in prompts]


def _qa_records() -> list[A.QARecord]:
    return [
        A.QARecord("v1", "a", "What is dark?", ["sky", "box", "road"], 1, "short", 4.0),
        A.QARecord("v2", "a", "What moves?", ["box", "sky"], 0, "short", 4.0),
        A.QARecord("v3", "sub/b", "Colour?", ["red", "blue"], 1, "medium"),
        A.QARecord("v4", "gone", "Anything?", ["x", "y"], 1, "long"),
    ]


def _rows(path: Path) -> dict[str, dict]:
    return {r["qid"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def test_answer_two_arms_rows_and_summary(videos, tmp_path):
    mllm = FakeMLLM("B")
    out = tmp_path / "qa.jsonl"
    summary = A.answer(
        _qa_records(),
        videos,
        out,
        answerer=mllm,
        n_frames=4,
        fps=2,
        max_frames=6,
        context_fraction=0.5,
        batch_size=3,
    )
    rows = _rows(out)
    assert set(rows) == {"v1", "v2", "v3", "v4"}
    r1 = rows["v1"]
    assert r1["span"] == [1.0, 2.5] and r1["window"] == pytest.approx([0.25, 3.25])
    assert r1["choice_gta"] == 1 and r1["correct_gta"] is True
    assert r1["choice_uniform"] == 1 and r1["correct_uniform"] is True
    assert r1["raw_ground"] == SPAN_ANSWER and r1["raw_gta"] == "B" and r1["fallback"] is False
    assert rows["v2"]["correct_gta"] is False  # B is wrong for v2
    assert rows["v4"]["error"].startswith("error: video not found")
    assert rows["v4"]["correct_gta"] is False and rows["v4"]["choice_gta"] is None

    # what the answerer saw: N frames inside the widened span vs N over the whole video
    answer_calls = [
        (t, d, p)
        for c in mllm.calls
        for t, d, p in zip(c["times"], c["durations"], c["prompts"], strict=True)
        if "<answer>" not in p
    ]
    prompt = mcq_prompt("What is dark?", ["sky", "box", "road"])
    seen = [(t, d) for t, d, p in answer_calls if p == prompt]
    assert seen[0][0] == pytest.approx(span_times(0.25, 3.25, 4)) and seen[0][1] == pytest.approx(
        3.0
    )
    assert seen[1][0] == pytest.approx(span_times(0.0, 4.0, 4)) and seen[1][1] == pytest.approx(
        4.0
    )
    assert all(len(t) == 4 for t, _, _ in answer_calls)
    ground_calls = [c for c in mllm.calls if any("<answer>" in p for p in c["prompts"])]
    assert all(c["max_new_tokens"] == A.DEFAULT_MAX_NEW_TOKENS for c in ground_calls)

    assert summary["n"] == 4 and summary["errors"] == 1 and summary["missing"] == 0
    assert summary["accuracy_gta"] == pytest.approx(50.0)  # v1, v3 right; v2 wrong; v4 error
    assert summary["accuracy_uniform"] == pytest.approx(50.0)
    assert summary["by_group"]["short"]["accuracy_gta"] == pytest.approx(50.0)
    assert summary["by_group"]["medium"]["n"] == 1
    assert list(summary["by_group"]) == ["short", "medium", "long"]
    assert summary["n_frames"] == 4 and summary["grounder"] == "model"
    on_disk = json.loads((tmp_path / "qa.summary.json").read_text())
    assert on_disk["accuracy_gta"] == summary["accuracy_gta"]
    assert "| all | 4 | 50.00 | 50.00 | 1 | 0 |" in A.format_answer_summary(summary)


def test_answer_fallback_when_grounding_fails(videos, tmp_path):
    mllm = FakeMLLM("A", span="no idea")
    out = tmp_path / "qa.jsonl"
    summary = A.answer(_qa_records()[:1], videos, out, answerer=mllm, n_frames=2, fps=1)
    row = _rows(out)["v1"]
    assert row["span"] is None and row["fallback"] is True and row["window"] == [0.0, 4.0]
    assert summary["fallback"] == 1 and summary["accuracy_gta"] == 0.0


def test_answer_resume_and_limit(videos, tmp_path):
    mllm = FakeMLLM("B")
    out = tmp_path / "qa.jsonl"
    s1 = A.answer(_qa_records(), videos, out, answerer=mllm, n_frames=2, fps=1, limit=2)
    assert s1["n"] == 2 and set(_rows(out)) == {"v1", "v2"}
    with out.open("a") as fh:
        fh.write('{"qid": "v3", "cho')  # torn write
    before = len(mllm.calls)
    s2 = A.answer(_qa_records(), videos, out, answerer=mllm, n_frames=2, fps=1)
    assert s2["skipped"] == 2 and s2["n"] == 4
    asked = [p for c in mllm.calls[before:] for p in c["prompts"] if "<answer>" in p]
    assert len(asked) == 1  # only v3 was grounded again (v4 has no video)
    s3 = A.answer(_qa_records(), videos, out, answerer=mllm, n_frames=2, fps=1)
    assert s3["skipped"] == 3 and s3["errors"] == 1  # the error row is retried, still missing
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["qid"] for x in lines].count("v4") == 2


def test_answer_validates(videos, tmp_path):
    with pytest.raises(ConfigError):
        A.answer(_qa_records(), videos, tmp_path / "x.jsonl", answerer=FakeMLLM(), grounder="nope")
    with pytest.raises(ConfigError):
        A.answer(_qa_records(), videos, tmp_path / "x.jsonl", answerer=FakeMLLM(), n_frames=0)
    with pytest.raises(ConfigError):
        A.answer(_qa_records(), videos, tmp_path / "x.jsonl", answerer=None)
    with pytest.raises(ConfigError):
        A.answer(_qa_records(), videos, tmp_path / "x.jsonl", answerer=FakeMLLM(), grounder="clip")


def test_answer_with_tiny_models_clip_grounder(videos, tiny_models, tmp_path):
    from scenetg.models.runner import QwenRunner

    runner = QwenRunner.load(tiny_models["qwen"], device="cpu", max_new_tokens=8)
    out = tmp_path / "qa.jsonl"
    summary = A.answer(
        _qa_records(),
        videos,
        out,
        answerer=runner,
        grounder="clip",
        grounder_model=str(tiny_models["clip"]),
        n_frames=4,
        fps=4,
        max_frames=16,
        max_new_tokens_answer=4,
        device="cpu",
    )
    rows = _rows(out)
    assert set(rows) == {"v1", "v2", "v3", "v4"}
    for qid in ("v1", "v2", "v3"):
        r = rows[qid]
        assert r["error"] is None and r["raw_ground"].startswith("clip window")
        a, b = r["window"]
        assert 0.0 <= a < b <= r["duration_s"] + 1e-9
        assert isinstance(r["raw_gta"], str) and isinstance(r["raw_uniform"], str)
        assert r["correct_gta"] == (r["choice_gta"] == r["answer_index"])
    assert summary["n"] == 4 and summary["grounder"] == "clip"


def test_answer_with_tiny_qwen_grounder(videos, tiny_models, tmp_path):
    out = tmp_path / "qa.jsonl"
    summary = A.answer(
        _qa_records()[:3],
        videos,
        out,
        answerer=str(tiny_models["qwen"]),
        n_frames=2,
        fps=2,
        max_frames=4,
        max_new_tokens_ground=8,
        max_new_tokens_answer=4,
        device="cpu",
        summary_path=tmp_path / "s.json",
    )
    assert summary["n"] == 3 and (tmp_path / "s.json").is_file()
    assert all(r["raw_ground"] is not None for r in _rows(out).values())
