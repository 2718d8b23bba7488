"""Annotation loaders: every real benchmark file, hand-written files for the other formats."""

from __future__ import annotations

import json
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scenetg.errors import ScenetgError
from scenetg.grounding.loaders import detect_format, load_annotations, read_metadata_durations


@pytest.fixture(scope="module")
def ann(assets):
    return assets / "annotations"


# --------------------------------------------------------------------------- real files


def test_charades_sta_plpnet_with_metadata_csv(ann):
    path = ann / "charades_sta" / "charades_sta_test.plpnet.txt"
    csv_path = ann / "charades_sta" / "Charades_v1_test.csv"
    assert detect_format(path) == "charades"
    records, report = load_annotations(path, metadata_csv=csv_path)
    assert len(records) == 3720 == report.n_records
    # 562 STA windows end after the video's `length`: clipped, none dropped
    assert (report.windows_clipped, report.windows_degenerate, report.records_degenerate) == (562, 0, 0)
    assert report.missing_duration == 0
    first = records[0]
    assert first.qid == "3MSZA_1"
    assert (first.video_id, first.duration_s, first.query) == (
        "3MSZA",
        30.96,
        "person turn a light on.",
    )
    assert first.windows == [(24.3, 30.4)]
    assert all(r.windows[0][1] <= r.duration_s for r in records)
    assert len({r.qid for r in records}) == 3720
    assert "562 GT windows clipped" in report.summary()


def test_charades_sta_without_durations_keeps_windows(ann):
    path = ann / "charades_sta" / "charades_sta_test.plpnet.txt"
    records, report = load_annotations(path, format="charades_sta")
    assert len(records) == 3720
    assert report.missing_duration == 3720 and report.windows_clipped == 0
    assert all(r.duration_s is None for r in records)
    # an explicit durations dict fills (and caps) one video
    records, report = load_annotations(path, durations={"3MSZA": 28.0})
    assert records[0].duration_s == 28.0 and records[0].windows == [(24.3, 28.0)]
    assert report.missing_duration == 3720 - sum(r.video_id == "3MSZA" for r in records)


def test_charades_sta_tvr_format_jsonl(ann):
    path = ann / "charades_sta" / "charades_sta_test_tvr_format.jsonl"
    assert detect_format(path) == "jsonl"
    records, report = load_annotations(path)
    assert len(records) == 3720
    assert records[0].qid == "12404"  # the file's own qid, as a string
    assert records[0].duration_s == 30.96 and records[0].windows == [(24.3, 30.4)]
    assert not report.has_issues


def test_activitynet_val_1(ann):
    path = ann / "activitynet_captions" / "val_1.json"
    assert detect_format(path) == "activitynet"
    records, report = load_annotations(path)
    assert len(records) == 17505
    assert len({r.video_id for r in records}) == 4917
    # 5 windows end after the duration (by 0.01 s); ~130 more only by float noise: not counted
    assert (report.windows_clipped, report.windows_degenerate, report.records_degenerate) == (5, 0, 0)
    assert report.summary().count("\n  e.g.") == 5
    by_qid = {r.qid: r for r in records}
    r = by_qid["v_uqiMw7tQ1Cc_1"]
    assert (
        r.query
        == "The coach helps the guy in red with the proper body placement and lifting technique."
    )
    assert r.windows == [(13.79, 54.32)] and r.duration_s == 55.15
    assert all(e <= r.duration_s for r in records for _, e in r.windows)


def test_tacos(ann):
    records, report = load_annotations(ann / "tacos" / "test.jsonl")
    assert len(records) == 4001 and not report.has_issues
    assert records[0].qid == "s30-d52_0" and records[0].video_id == "s30-d52"


def test_qvhighlights(ann):
    records, report = load_annotations(ann / "qvhighlights" / "highlight_val_release.jsonl")
    assert len(records) == 1550 and not report.has_issues
    assert sum(len(r.windows) > 1 for r in records) == 530
    assert records[0].qid == "2579" and records[0].windows == [(82.0, 150.0)]


# --------------------------------------------------------------------------- hand-written


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_charades_canonical_three_fields_and_csv(tmp_path):
    txt = _write(
        tmp_path / "sta.txt",
        "AAAAA 0.0 5.5##a person opens a door.\n\nBBBBB 2 12##someone sits down\nBBBBB 11 14##x\n",
    )
    meta = _write(tmp_path / "meta.csv", "id,length\nAAAAA,20\nBBBBB,10.5\n")
    assert read_metadata_durations(meta) == {"AAAAA": 20.0, "BBBBB": 10.5}
    records, report = load_annotations(txt, metadata_csv=meta)
    # line numbers, blank line kept; a window wholly past the video stays (IoU 0), counted
    assert [r.qid for r in records] == ["AAAAA_1", "BBBBB_3", "BBBBB_4"]
    assert records[1].windows == [(2.0, 10.5)] and records[1].raw_windows == [(2.0, 12.0)]
    assert records[2].windows == [(11.0, 10.5)] and records[0].raw_windows is None
    assert (report.windows_clipped, report.windows_degenerate, report.records_degenerate) == (2, 1, 1)


def test_ego4d_nlq_official_json(tmp_path):
    doc = {
        "version": "v1",
        "videos": [
            {
                "video_uid": "vid-1",
                "clips": [
                    {
                        "clip_uid": "clip-a",
                        "video_start_sec": 100.0,
                        "video_end_sec": 580.0,
                        "clip_start_sec": 100.0,
                        "clip_end_sec": 580.0,
                        "annotations": [
                            {
                                "annotation_uid": "ann-1",
                                "language_queries": [
                                    {
                                        "clip_start_sec": 10.0,
                                        "clip_end_sec": 14.5,
                                        "query": "Where was the knife? ",
                                    },
                                    {"clip_start_sec": 3.0, "clip_end_sec": 9.0, "template": "x"},
                                    {
                                        "clip_start_sec": 470.0,
                                        "clip_end_sec": 490.0,
                                        "query": "What did I pour?",
                                    },
                                ],
                            }
                        ],
                    }
                ],
            },
            {
                "video_uid": "vid-2",
                "clips": [
                    {
                        "clip_uid": "clip-b",
                        "clip_start_sec": 0.0,
                        "clip_end_sec": 60.0,
                        "annotations": [
                            {
                                "annotation_uid": "ann-2",
                                "language_queries": [
                                    {
                                        "clip_start_sec": 5.0,
                                        "clip_end_sec": 5.0,
                                        "query": "zero length",
                                    },
                                ],
                            }
                        ],
                    }
                ],
            },
        ],
    }
    path = _write(tmp_path / "nlq_val.json", json.dumps(doc, indent=2))
    assert detect_format(path) == "ego4d_nlq"
    records, report = load_annotations(path)
    # the zero-length window stays: evaluate_nlq keeps it in the denominator (IoU 0)
    assert [r.qid for r in records] == ["ann-1_0", "ann-1_2", "ann-2_0"]
    assert records[0].video_id == "clip-a" and records[0].duration_s == 480.0
    assert records[0].query == "Where was the knife?" and records[0].windows == [(10.0, 14.5)]
    assert records[1].windows == [(470.0, 480.0)] and records[1].raw_windows == [(470.0, 490.0)]
    assert records[2].windows == [(5.0, 5.0)]
    assert report.records_skipped == 1  # no query text
    assert (report.windows_clipped, report.windows_degenerate, report.records_degenerate) == (1, 1, 1)
    assert "zero length" in report.summary()


def test_mad_json(tmp_path):
    doc = {
        "q-100": {
            "movie": "m1",
            "sentence": "He opens the door.",
            "timestamps": [12.5, 15.0],
            "movie_duration": 7000.0,
        },
        "q-101": {
            "movie": "m1",
            "sentence": "She laughs.",
            "timestamps": [6990.0, 7010.0],
            "movie_duration": 7000.0,
        },
        "q-102": {
            "movie": "m2",
            "sentence": "Rain.",
            "timestamps": [40.0, 30.0],
            "movie_duration": 5000.0,
        },
    }
    path = _write(tmp_path / "mad_test.json", json.dumps(doc))
    assert detect_format(path) == "mad"
    records, report = load_annotations(path)
    assert [r.qid for r in records] == ["q-100", "q-101", "q-102"]
    assert records[0].video_id == "m1" and records[0].duration_s == 7000.0
    assert records[1].windows == [(6990.0, 7000.0)]
    assert records[2].windows == [(40.0, 30.0)]  # reversed: kept, scores IoU 0
    assert (report.windows_clipped, report.windows_degenerate, report.records_degenerate) == (1, 1, 1)


def test_plain_jsonl_and_json_list(tmp_path):
    lines = [
        {"video_id": "v1", "duration_s": 30, "query": "a", "start_s": 1, "end_s": 2},
        {"qid": 7, "vid": "v2", "duration": 40, "query": "b", "relevant_windows": [[1, 2], [5, 9]]},
    ]
    path = _write(tmp_path / "plain.jsonl", "\n".join(json.dumps(x) for x in lines))
    records, _ = load_annotations(path)
    assert [r.qid for r in records] == ["v1_1", "7"]
    assert records[1].windows == [(1.0, 2.0), (5.0, 9.0)]
    listed = _write(tmp_path / "list.json", json.dumps(lines, indent=1))
    assert detect_format(listed) == "jsonl"
    records, _ = load_annotations(listed)
    assert [r.qid for r in records] == ["v1_0", "7"]


def _query_table(rows):
    cols = [
        "sample_id",
        "video_id",
        "video_path",
        "duration_s",
        "start_s",
        "end_s",
        "query",
        "split",
    ]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def test_scenetg_parquet_folder(tmp_path):
    out = tmp_path / "OUT"
    (out / "data").mkdir(parents=True)
    pq.write_table(
        _query_table([("s1", "a/v1", "a/v1.mp4", 60.0, 0.0, 10.0, "red car", "train")]),
        out / "data" / "train-00000-of-00001.parquet",
    )
    pq.write_table(
        _query_table(
            [
                ("s2", "b/v2", "b/v2.mp4", 30.0, 5.0, 31.0, "a dog", "test"),
                ("s3", "b/v2", "b/v2.mp4", 30.0, 12.0, 20.0, "a cat", "test"),
            ]
        ),
        out / "data" / "test-00000-of-00001.parquet",
    )
    pq.write_table(pa.table({"video_id": ["x"]}), out / "videos.parquet")  # not a query file
    assert detect_format(out) == "scenetg"
    records, report = load_annotations(out)
    assert sorted(r.qid for r in records) == ["s1", "s2", "s3"]
    assert report.windows_clipped == 1
    records, _ = load_annotations(out / "data", split="test")
    assert [r.qid for r in records] == ["s2", "s3"]
    assert records[0].windows == [(5.0, 30.0)] and records[0].video_id == "b/v2"
    records, _ = load_annotations(out / "data" / "train-00000-of-00001.parquet")
    assert records[0].query == "red car"
    with pytest.raises(ScenetgError, match="missing columns"):
        load_annotations(out / "videos.parquet")


def test_probing_durations_from_videos_dir(tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "AAAAA.mp4").write_bytes(b"")
    txt = _write(tmp_path / "sta.txt", "AAAAA 1 50##q\nZZZZZ 1 2##q\n")
    calls = []
    fake = types.ModuleType("scenetg.video.probe")

    def probe_video(path):
        calls.append(path.name)
        return types.SimpleNamespace(duration_s=40.0)

    fake.probe_video = probe_video
    monkeypatch.setitem(sys.modules, "scenetg.video.probe", fake)
    records, report = load_annotations(txt, videos_dir=videos)
    assert calls == ["AAAAA.mp4"]
    assert records[0].duration_s == 40.0 and records[0].windows == [(1.0, 40.0)]
    assert records[1].duration_s is None and report.missing_duration == 1
    assert "no video file" in report.summary()


def test_probing_a_real_video(assets, tmp_path):
    pytest.importorskip("scenetg.video.probe")
    txt = _write(tmp_path / "sta.txt", "3MSZA 24.3 30.4##person turn a light on.\n")
    records, _ = load_annotations(txt, videos_dir=assets / "videos" / "charades")
    assert records[0].duration_s == pytest.approx(30.96, abs=0.1)


# --------------------------------------------------------------------------- errors, detection


@pytest.mark.parametrize(
    ("name", "text", "where", "reason"),
    [
        ("a.txt", "V1 0 5##ok\nV1 0 5 no hashes\n", ":2:", "VID START END##query"),
        ("b.txt", "V1 0 5##ok\n\nV1 0 5 1 2##five fields\n", ":3:", "5 fields"),
        ("c.txt", "V1 zero 5##bad start\n", ":1:", "start must be a number"),
        (
            "d.jsonl",
            '{"vid": "v", "query": "q", "relevant_windows": [[0, 1]]}\n\n{"vid": \n',
            ":3:",
            "invalid JSON",
        ),
        ("e.jsonl", '{"query": "q", "relevant_windows": [[0, 1]]}\n', ":1:", "no video id"),
        ("f.jsonl", '{"vid": "v", "query": "q", "duration": 10}\n', ":1:", "no GT windows"),
        ("g.jsonl", '{"vid": "v", "query": "q", "relevant_windows": [[0, 1, 2]]}\n', ":1:", "pair"),
        (
            "h.json",
            '{"v_1": {"duration": 5,\n "timestamps": [[0, 1]],\n "sentences": []}}',
            ":1:",
            "1 timestamps but 0 sentences",
        ),
        ("i.json", '{"videos": [\n {"clips": [\n  {"annotations": []}]}]}', ":1:", "no 'clip_uid'"),
        ("j.json", '{"q1": {"movie": "m",\n "sentence": "s"}}', ":1:", "or 'timestamps'"),
        (
            "k.json",
            '{"v_1": {"duration": 5,\n  "timestamps": [[0, 1]]\n  "sentences": ["a"]}}',
            ":3:",
            "invalid JSON",
        ),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, name, text, where, reason):
    path = _write(tmp_path / name, text)
    with pytest.raises(ScenetgError) as info:
        load_annotations(path)
    message = str(info.value)
    assert message.startswith(str(path) + where), message
    assert reason in message


def test_duplicate_qids_are_an_error(tmp_path):
    lines = ['{"qid": 1, "vid": "v", "query": "q", "relevant_windows": [[0, 1]]}'] * 2
    path = _write(tmp_path / "dup.jsonl", "\n".join(lines))
    with pytest.raises(
        ScenetgError, match=r"dup.jsonl:2: duplicate qid '1' \(first at .*dup.jsonl:1\)"
    ):
        load_annotations(path)


def test_detection_rules_and_bad_format_names(tmp_path):
    assert detect_format(_write(tmp_path / "noext", "V 1 2##q\n")) == "charades"
    assert detect_format(_write(tmp_path / "anno.data", '{"vid": "v"}\n{"vid": "w"}\n')) == "jsonl"
    assert detect_format("hub:someone/scenetg-data") == "scenetg"  # a Hub dataset, named explicitly
    with pytest.raises(ScenetgError, match="cannot tell the annotation format"):
        detect_format(_write(tmp_path / "odd.json", '{"a": 1}'))
    with pytest.raises(ScenetgError, match="not found"):
        detect_format(tmp_path / "missing.json")
    with pytest.raises(ScenetgError, match="unknown annotation format 'xml'"):
        load_annotations(tmp_path / "noext", format="xml")
    with pytest.raises(ScenetgError, match="empty annotation file"):
        load_annotations(_write(tmp_path / "empty.json", ""))
    with pytest.raises(ScenetgError, match="need an id column"):
        read_metadata_durations(_write(tmp_path / "m.csv", "name,secs\nA,1\n"))


def test_mad_uses_ext_timestamps_when_present(tmp_path):
    """MAD's release evaluates on `ext_timestamps` (windows under 2 s stretched to 2 s)."""
    doc = {
        "q1": {"movie": "m", "sentence": "A door shuts.", "timestamps": [10.2, 10.9],
               "ext_timestamps": [9.55, 11.55], "movie_duration": 6000.0},
        "q2": {"movie": "m", "sentence": "He runs.", "timestamps": [20.0, 25.0],
               "movie_duration": 6000.0},
    }
    records, _ = load_annotations(_write(tmp_path / "MAD_test.json", json.dumps(doc)))
    assert records[0].windows == [(9.55, 11.55)]
    assert records[1].windows == [(20.0, 25.0)]  # no ext_timestamps: the plain window


def test_groundnlq_jsonl(tmp_path):
    """GroundNLQ's Ego4D-NLQ JSONL (`query_id`, `timestamps`), as in its ego4d_data/ folder."""
    lines = [
        {"query": "Where did i put the fire gun ?", "query_id": "95441b96_0",
         "duration": 480.0366739908854, "video_id": "cc2d7790", "query_type": "nlq",
         "timestamps": [[28.60389, 29.013]]},
        {"query": "Where was the drill machine ?", "query_id": "95441b96_1",
         "duration": 480.0366739908854, "video_id": "cc2d7790", "query_type": "nlq",
         "timestamps": [[78.29272, 80.013]]},
    ]
    path = _write(tmp_path / "ego4d_nlq_val_v2.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    records, report = load_annotations(path)
    assert [r.qid for r in records] == ["95441b96_0", "95441b96_1"]  # same qids as nlq_val.json
    assert records[0].video_id == "cc2d7790" and records[0].windows == [(28.60389, 29.013)]
    assert not report.has_issues
    # a file with no windows at all names the keys it looked for
    bad = _write(tmp_path / "test.jsonl", json.dumps({"query_id": "a", "video_id": "v", "query": "q"}))
    with pytest.raises(ScenetgError, match=r"test.jsonl:1: no GT windows: expected one of "
                       r"'relevant_windows', 'windows', 'timestamps'"):
        load_annotations(bad)


def test_one_line_json_errors_name_the_record_not_line_1(tmp_path):
    """Released JSON files are one line: the record's key or index says where, not `:1:`."""
    anet = {f"v_{i}": {"duration": 10, "timestamps": [[0, 1]], "sentences": ["a"]} for i in range(3)}
    anet["v_2"]["timestamps"] = [[0, "x"]]
    path = _write(tmp_path / "val_1.json", json.dumps(anet))
    with pytest.raises(ScenetgError) as info:
        load_annotations(path)
    assert str(info.value).startswith(f"{path}: v_2[0]: timestamp end must be a number")
    mad = {"q1": {"movie": "m", "sentence": "s", "timestamps": [1, 2]}, "q2": {"movie": "m"}}
    path = _write(tmp_path / "mad.json", json.dumps(mad))
    with pytest.raises(ScenetgError, match=r"mad.json: q2: no 'sentence'"):
        load_annotations(path)
    listed = _write(tmp_path / "list.json", json.dumps([{"vid": "a", "query": "q",
                                                         "relevant_windows": [[0, 1]]}, {"vid": "b"}]))
    with pytest.raises(ScenetgError, match=r"list.json: item 1: no 'query'"):
        load_annotations(listed)
    # a file of several lines still gets the line, found by counting forward only
    text = json.dumps(anet, indent=1)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '"v_2"' in t)
    path = _write(tmp_path / "val_2.json", text)
    with pytest.raises(ScenetgError, match=rf"val_2.json:{line}: v_2\[0\]"):
        load_annotations(path)
