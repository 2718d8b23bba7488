"""One writer per OUT: a second build or stage command fails at once, naming the holder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scenetg.cli import main
from scenetg.curate.run.workdir import LOCK, lock_out
from scenetg.errors import ScenetgError

HOLD = """
import sys, time
from scenetg.curate.run.workdir import lock_out
with lock_out(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_out(tmp_path):
    """OUT locked by another process (as a running build holds it)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    yield out, proc.pid
    proc.kill()
    proc.wait()


def test_second_build_on_a_locked_out_exits_2_naming_pid_and_host(held_out, tmp_path, capsys):
    out, pid = held_out
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"not looked at")
    assert main(["build", "--videos", str(videos), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"pid {pid} on host {socket.gethostname()}" in err and len(err.strip().splitlines()) == 1
    assert not (out / "manifest.json").exists() and not (out / "work").exists()
    assert main(["shots", "--videos", str(videos), "--out", str(out)]) == 2
    assert f"pid {pid}" in capsys.readouterr().err


def test_stage_commands_on_a_locked_out_exit_2(held_out, capsys):
    out, pid = held_out
    (out / "manifest.json").write_text(json.dumps({"videos": {}, "config": {}, "videos_dir": "."}))
    for command in (["captions", str(out)], ["filter", str(out)], ["export", str(out)]):
        assert main(command) == 2, command
        assert f"pid {pid}" in capsys.readouterr().err


def test_the_lock_is_free_again_after_the_holder_dies(held_out):
    out, _ = held_out
    with pytest.raises(ScenetgError, match="in use by another scenetg run"):
        with lock_out(out):
            pass


def test_a_lock_file_left_by_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with lock_out(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
        with lock_out(out):  # re-entrant: build -> export in one process
            pass


def test_out_naming_a_file_is_a_usage_error(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"x")
    (tmp_path / "file").write_text("x")
    assert main(["build", "--videos", str(videos), "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'file'}: exists and is not a folder (--out)"
