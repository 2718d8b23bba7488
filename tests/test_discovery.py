"""Finding videos under --videos: symlinked folders, loops, odd names."""

from __future__ import annotations

import json
import os
from pathlib import Path

from scenetg.cli import main
from scenetg.curate.run.workdir import discover_videos
from scenetg.video.synthetic import write_synthetic_video

CONFIG = str(Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml")
EXTS = ["mp4", "mkv"]


def test_symlinked_subfolders_are_followed(tmp_path):
    elsewhere = tmp_path / "storage" / "clips"
    elsewhere.mkdir(parents=True)
    (elsewhere / "a.mp4").write_bytes(b"x")
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "b.mp4").write_bytes(b"x")
    os.symlink(elsewhere, videos / "linked")
    assert [j.video_id for j in discover_videos(videos, EXTS)] == ["b", "linked/a"]


def test_a_folder_loop_is_searched_once_and_reported_as_a_loop(tmp_path):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    (videos / "sub" / "a.mp4").write_bytes(b"x")
    os.symlink("..", videos / "sub" / "back")  # sub/back -> videos
    os.symlink("sub", videos / "again")  # a second link to one folder
    warnings: list[str] = []
    jobs = discover_videos(videos, EXTS, warnings.append)
    assert [j.video_id for j in jobs] == ["sub/a"]
    assert sorted(warnings) == [
        "skipped symlinked folder again: it leads to sub, already searched (a symlink loop or a second link)",
        "skipped symlinked folder sub/back: it leads to ., already searched (a symlink loop or a second link)",
    ]


def test_symlink_loops_and_odd_names_get_one_line_reasons(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "good.mp4", [1.5, 1.5], 10.0, size=(64, 48))
    os.symlink("loop.mp4", videos / "loop.mp4")
    os.symlink("dir_loop", videos / "dir_loop")
    (videos / "x.mp4").mkdir()
    (videos / "new\nline.mp4").write_text("not a video")
    out = tmp_path / "out"
    assert main(["shots", "--videos", str(videos), "--out", str(out), "-c", CONFIG]) == 3
    err = capsys.readouterr().err
    assert "x.mp4: a folder, not a video" in err
    assert "skipped dir_loop: symlink loop" in err
    videos_state = json.loads((out / "manifest.json").read_text())["videos"]
    assert videos_state["good"]["status"] == "partial"  # shots done
    assert videos_state["loop"]["status"] == "error"
    assert "symlink loop" in videos_state["loop"]["error"] and "dangling" not in videos_state["loop"]["error"]
    bad = videos_state["new\nline"]
    assert bad["status"] == "error" and "\n" not in bad["error"] and "new\\nline" in bad["error"]
    failed = [line for line in err.splitlines() if line.startswith("failed")]
    assert sorted(failed)[0].startswith("failed loop: loop.mp4: symlink loop")
    assert any(line.startswith("failed new\\nline: new\\nline.mp4: ") for line in failed), failed
