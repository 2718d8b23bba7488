"""`scenetg inspect` opens only videos inside the videos folder, whatever the Parquet says."""

from __future__ import annotations

from pathlib import Path

from scenetg.curate.dataset import report
from scenetg.curate.stages.export import write_videos_table
from scenetg.video import frames as frames_mod
from scenetg.video.synthetic import write_synthetic_video
from tests.test_export import make_rows, write


def test_report_refuses_a_video_path_that_leaves_the_folder(tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    (videos / "set").mkdir(parents=True)
    rows = make_rows(2, scenes=2)
    for r in rows:
        r["duration_s"], r["start_s"], r["end_s"] = 2.0, r["start_s"] / 10, r["end_s"] / 10
    rows[0]["video_path"] = rows[1]["video_path"] = "../../secret.mp4"  # video 000, from Parquet
    write_synthetic_video(tmp_path / "secret.mp4", [2.0], 10.0, size=(32, 32))
    for r in rows[2:]:
        write_synthetic_video(videos / r["video_path"], [2.0], 10.0, size=(32, 32))
    out = tmp_path / "out"
    write(out, rows, splits={"train": 1.0})
    write_videos_table(out, [{"video_id": v, "path": p, "duration_s": 2.0, "fps": 10.0, "width": 32,
                              "height": 32, "n_frames": 20, "status": "ok", "error": None}
                             for v, p in sorted({(r["video_id"], r["video_path"]) for r in rows})])
    opened: list[Path] = []
    real = frames_mod.iter_frames_at
    monkeypatch.setattr(frames_mod, "iter_frames_at",
                        lambda path, *a, **k: opened.append(Path(path)) or real(path, *a, **k))
    page = report.write_report(out, videos).read_text()
    assert opened == [videos / "set" / "video 001.mp4"]
    assert "video id &#x27;../../secret.mp4&#x27; leaves the videos folder" in page
