"""End-to-end `scenetg build` with the tiny models: outputs, bad inputs, exit codes, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from scenetg.cli import main
from scenetg.video.synthetic import write_synthetic_video

pytestmark = pytest.mark.slow


DEMO_BUILD = Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml"


def _build_args(videos: Path, out: Path, models: dict[str, Path], *extra: str, config: Path = DEMO_BUILD) -> list[str]:
    return [
        "build", "--videos", str(videos), "--out", str(out), "--config", str(config),
        "--caption-model", str(models["qwen"]), "--clip-model", str(models["clip"]), *extra,
    ]


def _make_good_videos(folder: Path, n: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    specs = [([2.0, 1.5, 2.5], 25.0), ([1.5, 2.0], 24.0), ([2.0, 2.0, 1.5], 30000 / 1001)]
    names = ["alpha.mp4", "sub dir/beta ü.mp4", "gamma.mkv"]
    for i in range(n):
        path = folder / names[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        durations, fps = specs[i]
        write_synthetic_video(path, durations, fps, size=(160, 96), seed=i)


def _write_audio_only(path: Path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)


def _make_bad_videos(folder: Path, good: Path) -> dict[str, str]:
    """Bad inputs next to good ones; returns video_id -> expected error substring."""
    (folder / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.mp4").write_text("this is not a video\n")
    _write_audio_only(folder / "audio only.mp4")
    write_synthetic_video(folder / "one_frame.mp4", [1 / 25], 25.0, size=(64, 48))
    os.symlink(folder / "does-not-exist.mp4", folder / "dangling.mp4")
    return {
        "empty": "empty",
        "truncated": "",
        "notes": "",
        "audio only": "no video stream",
        "one_frame": "frame",
        "dangling": "",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("build")
    videos = root / "videos"
    _make_good_videos(videos)
    expected_errors = _make_bad_videos(videos, videos / "alpha.mp4")
    out = root / "out"
    code = main(_build_args(videos, out, tiny_models))
    return {"root": root, "videos": videos, "out": out, "code": code, "errors": expected_errors}


def test_build_writes_the_layout(built):
    out = built["out"]
    for rel in ("manifest.json", "videos.parquet", "scenes.parquet", "README.md"):
        assert (out / rel).is_file(), rel
    assert list((out / "audit").glob("queries-*.parquet"))
    assert list((out / "data").glob("*.parquet"))


def test_bad_videos_give_error_rows_and_exit_code_3(built):
    assert built["code"] == 3
    videos = pq.read_table(built["out"] / "videos.parquet").to_pylist()
    by_id = {r["video_id"]: r for r in videos}
    assert by_id["alpha"]["status"] == "ok"
    assert by_id["sub dir/beta ü"]["status"] == "ok"
    assert by_id["gamma"]["status"] == "ok"
    for vid, needle in built["errors"].items():
        row = by_id[vid]
        assert row["status"] == "error", vid
        assert row["error"] and "\n" not in row["error"], vid
        assert needle.lower() in row["error"].lower(), (vid, row["error"])
        assert row["path"].startswith(vid), row


def test_good_videos_have_scenes_and_queries(built):
    scenes = pq.read_table(built["out"] / "scenes.parquet").to_pylist()
    audit = pq.read_table(built["out"] / "audit").to_pylist()
    assert {s["video_id"] for s in scenes} == {"alpha", "sub dir/beta ü", "gamma"}
    assert len(audit) == len(scenes)
    for row in audit:
        assert row["start_s"] < row["end_s"] <= row["duration_s"] + 1e-6
        assert row["caption_model"] and row["clip_model"]
    alpha = [s for s in scenes if s["video_id"] == "alpha"]
    assert alpha[0]["start_s"] == 0.0
    assert alpha[-1]["end_s"] == pytest.approx(6.0, abs=0.05)


def test_inspect_writes_stats_and_html_report(built, capsys):
    out = built["out"]
    assert main(["inspect", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert stats["videos_ok"] == 3 and stats["videos_failed"] == 6
    assert stats["queries_generated"] == stats["queries_kept"] + sum(stats["drop_reasons"].values())
    html = (out / "report" / "index.html").read_text()
    assert html.count("<img src='data:image/jpeg;base64,") == stats["queries_generated"]
    assert "sub dir/beta ü" in html
    assert ("dropped: " in html) == (stats["queries_kept"] < stats["queries_generated"])


def test_publish_dry_run_validates_and_refuses_a_broken_card(built, tmp_path, capsys):
    out = built["out"]
    assert main(["publish", str(out), "--repo-id", "me/demo", "--dry-run"]) == 0
    assert "would upload" in capsys.readouterr().out
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "README.md").write_text("no header\n")
    assert main(["publish", str(broken), "--repo-id", "me/demo", "--dry-run"]) == 2
    assert "no YAML header" in capsys.readouterr().err


def test_rerun_is_byte_identical_and_manifest_is_complete(built, tiny_models):
    out = built["out"]
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    code = main(_build_args(built["videos"], out, tiny_models, "--resume"))
    assert code == 3
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert before == after
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["videos_ok"] == 3
    assert manifest["config"]["captions"]["model"] == str(tiny_models["qwen"])


def test_a_finished_dataset_is_not_rebuilt_without_resume_or_overwrite(built, tiny_models, capsys):
    out = built["out"]
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".scenetg.lock"}
    assert any(p.parts[0] == "data" for p in before)
    assert main(_build_args(built["videos"], out, tiny_models)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a finished dataset" in err[0]
    assert "--resume" in err[0] and "--overwrite" in err[0]
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".scenetg.lock"}
    assert after == before  # nothing touched, the manifest included


def test_unknown_model_fails_fast_with_the_flag_named(tmp_path, capsys):
    videos = tmp_path / "v"
    _make_good_videos(videos, n=1)
    code = main(["build", "--videos", str(videos), "--out", str(tmp_path / "o"),
                 "--caption-model", str(tmp_path / "no-such-model"), "--clip-model", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--caption-model" in err and "no-such-model" in err
    assert not (tmp_path / "o" / "work").exists(), "no video work may start before the model check"


def test_unknown_clip_model_fails_fast_with_its_flag(tmp_path, tiny_models, capsys):
    videos = tmp_path / "v"
    _make_good_videos(videos, n=1)
    code = main(["build", "--videos", str(videos), "--out", str(tmp_path / "o"),
                 "--caption-model", str(tiny_models["qwen"]), "--clip-model", "ViT-Nope-99:openai"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--clip-model" in err and "ViT-Nope-99" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "work").exists()


def test_missing_videos_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["build", "--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err


def _wait_for_first_done(manifest: Path, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("build finished before it could be killed")
        try:
            videos = json.loads(manifest.read_text())["videos"]
            if any(v["status"] == "ok" for v in videos.values()):
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    pytest.fail("no video finished in time")


def test_resume_after_sigkill_equals_an_unkilled_run(tmp_path, tiny_models):
    videos = tmp_path / "videos"
    _make_good_videos(videos)
    # Batches of one scene: videos finish one after another, so the kill lands mid-build (with
    # batches spanning videos, three short clips finish in the same call).
    demo = yaml.safe_load(DEMO_BUILD.read_text())
    demo["captions"]["batch_size"] = 1
    demo.setdefault("filter", {})["batch_size"] = 1
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump(demo))
    reference = tmp_path / "reference"
    assert main(_build_args(videos, reference, tiny_models, config=config)) == 0

    killed = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    env["HF_HUB_OFFLINE"] = "1"
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scenetg.cli", *_build_args(videos, killed, tiny_models, config=config)],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        _wait_for_first_done(killed / "manifest.json", proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    # stderr is not a terminal: no weights-loading tqdm bar among the log lines
    assert "Loading weights" not in stderr.read_text() and "it/s]" not in stderr.read_text()
    statuses = [v["status"] for v in json.loads((killed / "manifest.json").read_text())["videos"].values()]
    assert "ok" in statuses and statuses.count("ok") < len(statuses)

    assert main(_build_args(videos, killed, tiny_models, "--resume", config=config)) == 0
    ref_files = sorted(p.relative_to(reference) for p in reference.rglob("*.parquet"))
    assert ref_files == sorted(p.relative_to(killed) for p in killed.rglob("*.parquet"))
    for rel in ref_files:
        assert (reference / rel).read_bytes() == (killed / rel).read_bytes(), rel


def test_ray_engine_with_the_default_config_finishes_and_equals_local(tmp_path, tiny_models, capsys):
    """No --config (GPU keys `auto`) on this CPU-only machine: Ray Data (local Ray) finishes and
    writes the same Parquet bytes as the local engine."""
    videos = tmp_path / "videos"
    _make_good_videos(videos, n=2)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    models = ["--caption-model", str(tiny_models["qwen"]), "--clip-model", str(tiny_models["clip"])]
    assert main(["build", "--videos", str(videos), "--out", str(local), *models]) == 0
    assert main(["build", "--videos", str(videos), "--out", str(on_ray), "--engine", "ray", *models]) == 0
    files = sorted(p.relative_to(local) for p in local.rglob("*.parquet"))
    assert files == sorted(p.relative_to(on_ray) for p in on_ray.rglob("*.parquet"))
    for rel in files:
        assert (local / rel).read_bytes() == (on_ray / rel).read_bytes(), rel
    manifest = json.loads((on_ray / "manifest.json").read_text())
    assert manifest["config"]["engine"]["name"] == "ray"

    # An explicit GPU request this cluster cannot meet fails at once instead of waiting forever.
    config = tmp_path / "gpu.yaml"
    config.write_text("engine:\n  caption_gpus: 1\n")
    capsys.readouterr()
    assert main(["build", "--videos", str(videos), "--out", str(tmp_path / "gpu"), "--engine", "ray",
                 "-c", str(config), *models]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: engine.caption_gpus: 1 actor(s) x 1 GPU need 1 GPU"), err


def test_each_video_is_decoded_once_per_build(tmp_path, tiny_models):
    """Captions and CLIP frames: one keyframe decode pass per video, however many scenes; the
    filter reads the frames the captions pass kept, and they are removed once it is done."""
    from scenetg.video.seek import DECODE_STATS

    videos = tmp_path / "videos"
    _make_good_videos(videos, n=1)
    DECODE_STATS.reset()
    assert main(_build_args(videos, tmp_path / "out", tiny_models)) == 0
    scenes = pq.read_table(tmp_path / "out" / "scenes.parquet").num_rows
    assert scenes >= 3
    assert DECODE_STATS.passes == 1  # the captions pass; the filter decodes nothing
    assert not list((tmp_path / "out").rglob("filter-*.npy"))


def test_resume_redoes_a_replaced_video_and_only_that_one(tmp_path, tiny_models, monkeypatch):
    videos = tmp_path / "videos"
    _make_good_videos(videos, n=2)
    out = tmp_path / "out"
    assert main(_build_args(videos, out, tiny_models)) == 0
    before = {r["video_id"]: r for r in pq.read_table(out / "scenes.parquet").to_pylist() if r["scene_index"] == 0}
    assert before["alpha"]["end_s"] == pytest.approx(2.0)

    write_synthetic_video(videos / "alpha.mp4", [3.0, 3.0], 25.0, size=(160, 96), seed=7)
    from scenetg.curate.run import video_stages as stages

    shot_runs: list[str] = []
    real = stages.run_shots
    monkeypatch.setattr(stages, "run_shots", lambda path, cfg: shot_runs.append(Path(path).name) or real(path, cfg))
    assert main(_build_args(videos, out, tiny_models, "--resume")) == 0
    assert shot_runs == ["alpha.mp4"]
    after = [r for r in pq.read_table(out / "scenes.parquet").to_pylist() if r["video_id"] == "alpha"]
    assert [(r["start_s"], r["end_s"]) for r in after] == [(0.0, 3.0), (3.0, pytest.approx(6.0, abs=0.05))]


def test_stage_commands_one_by_one_equal_the_whole_build(tmp_path, tiny_models):
    videos = tmp_path / "videos"
    _make_good_videos(videos, n=2)
    whole, staged = tmp_path / "whole", tmp_path / "staged"
    assert main(_build_args(videos, whole, tiny_models)) == 0
    config = str(Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml")
    assert main(["shots", "--videos", str(videos), "--out", str(staged), "--config", config]) == 0
    assert main(["captions", str(staged), "--caption-model", str(tiny_models["qwen"])]) == 0
    assert main(["filter", str(staged), "--clip-model", str(tiny_models["clip"])]) == 0
    assert main(["export", str(staged)]) == 0
    files = sorted(p.relative_to(whole) for p in whole.rglob("*.parquet"))
    assert files == sorted(p.relative_to(staged) for p in staged.rglob("*.parquet"))
    for rel in files:
        assert (whole / rel).read_bytes() == (staged / rel).read_bytes(), rel
