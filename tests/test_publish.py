"""`scenetg publish`: folder validation (`-of-N`, unique sample_id, 0 kept) and the upload path
against a local Hub-like HTTP endpoint that records every request."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scenetg.cli import main
from scenetg.config import ExportConfig
from scenetg.curate.dataset.publish import dataset_problems
from scenetg.curate.stages.export import write_dataset, write_scenes_table, write_videos_table

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_SECRETtokenTHATmustNEVERbePRINTED"


def audit_rows(n_videos: int = 6, scenes: int = 4, kept_every: int = 2) -> list[dict]:
    rows = []
    for v in range(n_videos):
        for s in range(scenes):
            kept = kept_every > 0 and s % kept_every == 0
            rows.append({
                "video_id": f"v{v}", "video_path": f"v{v}.mp4", "duration_s": 4.0 * scenes,
                "start_s": 4.0 * s, "end_s": 4.0 * s + 4.0, "scene_index": s,
                "query": f"scene {s} of video {v}", "caption_model": "tiny", "clip_model": "tiny-clip",
                "clip_self": 0.5, "clip_best_other": 0.4, "clip_margin": 0.1, "clip_rank": 1,
                "confusers": [], "kept": kept, "drop_reason": None if kept else "ambiguous",
            })
    return rows


def make_dataset(out: Path, rows: list[dict], rows_per_shard: int = 1000) -> Path:
    kept = [{k: v for k, v in r.items() if k not in ("kept", "drop_reason")} for r in rows if r["kept"]]
    write_dataset(out, kept, rows, ExportConfig(rows_per_shard=rows_per_shard), {})
    vids = sorted({r["video_id"] for r in rows})
    write_videos_table(out, [{"video_id": v, "path": f"{v}.mp4", "duration_s": 16.0, "fps": 25.0,
                              "width": 64, "height": 48, "n_frames": 400, "status": "ok", "error": None}
                             for v in vids])
    write_scenes_table(out, [{"video_id": r["video_id"], "scene_index": r["scene_index"],
                              "start_s": r["start_s"], "end_s": r["end_s"], "start_frame": 0,
                              "end_frame": 1, "n_shots": 1, "keyframe_times": [r["start_s"]]} for r in rows])
    return out


def dry_run(out: Path, capsys) -> tuple[int, str, str]:
    code = main(["publish", str(out), "--repo-id", "me/demo", "--dry-run"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_consistent_dataset_passes_and_lists_its_files(tmp_path, capsys):
    out = make_dataset(tmp_path / "out", audit_rows(), rows_per_shard=3)
    assert dataset_problems(out) == []
    code, stdout, _ = dry_run(out, capsys)
    n_files = 1 + len(list(out.glob("data/*.parquet"))) + len(list(out.glob("audit/*.parquet"))) + 2
    assert code == 0 and f"would upload {n_files} file(s)" in stdout


def test_shards_of_two_exports_are_refused(tmp_path, capsys):
    """What an interrupted re-export with a new rows_per_shard leaves behind."""
    rows = audit_rows()
    old = make_dataset(tmp_path / "old", rows, rows_per_shard=3)
    out = make_dataset(tmp_path / "out", rows, rows_per_shard=1000)
    for shard in (old / "data").glob("train-*"):
        shutil.copy(shard, out / "data" / shard.name)
    problems = dataset_problems(out)
    assert any("data/train-*: shards of different exports" in p for p in problems), problems
    code, _, err = dry_run(out, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "shards of different exports" in err and "--resume" in err


def test_missing_shard_and_duplicate_sample_id_are_refused(tmp_path, capsys):
    out = make_dataset(tmp_path / "out", audit_rows(), rows_per_shard=2)
    shards = sorted((out / "data").glob("train-*"))
    assert len(shards) >= 2
    shards[-1].unlink()
    assert any("shards missing" in p for p in dataset_problems(out))

    out2 = make_dataset(tmp_path / "out2", audit_rows())
    shard = next((out2 / "data").glob("train-*"))
    table = pq.read_table(shard)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), shard)
    problems = dataset_problems(out2)
    assert problems == [f"data/: 1 sample_id(s) appear more than once (e.g. {table['sample_id'][0]}); "
                        f"re-run `scenetg export {out2}` or the build with --resume"]
    code, _, err = dry_run(out2, capsys)
    assert code == 2 and "appear more than once" in err


def test_card_and_shards_must_agree(tmp_path):
    out = make_dataset(tmp_path / "out", audit_rows())
    card = (out / "README.md").read_text()
    (out / "README.md").write_text(card.replace("path: data/train-*", "path: data/nosuch-*"))
    problems = dataset_problems(out)
    assert any("names data/nosuch-* but no file matches" in p for p in problems)
    assert any("data/train-* shards are not listed" in p for p in problems)


def test_zero_kept_queries_says_so_not_schema(tmp_path, capsys):
    out = make_dataset(tmp_path / "out", audit_rows(kept_every=0))
    assert not list((out / "data").glob("*.parquet"))
    code, _, err = dry_run(out, capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {out}: the filter kept 0 of 24 queries (dropped: ambiguous 24), so there is no data "
        "to publish; lower filter.min_margin or add videos, then rebuild"]
    assert "schema" not in err


# ----- upload against a local Hub-like endpoint -------------------------------------------------
class FakeHub(BaseHTTPRequestHandler):
    """The routes create_repo + list_repo_files + create_commit use (regular and LFS files)."""

    requests: list[dict] = []
    uploads: dict[str, bytes] = {}
    remote_files = ["README.md", "data/train-00000-of-00009.parquet", ".gitattributes"]
    fail_create: int | None = None

    def log_message(self, *args):  # keep the test output clean
        pass

    def _reply(self, body, status: int = 200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append({"method": self.command, "path": urlparse(self.path).path,
                              "auth": self.headers.get("Authorization"), "body": body})
        return body

    def do_GET(self):
        self._record()
        path = urlparse(self.path).path
        if path == "/api/datasets/me/scenes/tree/main":
            return self._reply([{"type": "file", "path": p, "oid": "0" * 40, "size": 1}
                                for p in self.remote_files])
        self._reply({"error": "not found"}, 404)

    def do_PUT(self):
        body = self._record()
        self.uploads[urlparse(self.path).path.rsplit("/", 1)[1]] = body
        self._reply({})

    def do_POST(self):
        body = self._record()
        path = urlparse(self.path).path
        base = f"http://{self.headers['Host']}"
        if path == "/api/repos/create":
            if self.fail_create:
                return self._reply({"error": "Invalid credentials in Authorization header"}, self.fail_create)
            return self._reply({"url": f"{base}/datasets/me/scenes"})
        if path == "/api/validate-yaml":
            return self._reply({"errors": [], "warnings": []})
        if path == "/api/datasets/me/scenes/preupload/main":
            files = json.loads(body)["files"]
            return self._reply({"files": [
                {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                 "shouldIgnore": False, "oid": None} for f in files]})
        if path == "/datasets/me/scenes.git/info/lfs/objects/batch":
            objects = json.loads(body)["objects"]
            return self._reply({"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"],
                 "actions": {"upload": {"href": f"{base}/lfs-upload/{o['oid']}"}}} for o in objects]})
        if path == "/api/datasets/me/scenes/commit/main":
            return self._reply({"commitUrl": f"{base}/datasets/me/scenes/commit/abc", "commitOid": "a" * 40})
        self._reply({"error": "not found"}, 404)


@pytest.fixture
def hub():
    FakeHub.requests, FakeHub.uploads, FakeHub.fail_create = [], {}, None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_publish(out: Path, endpoint: str, home: Path) -> subprocess.CompletedProcess:
    """A fresh process: huggingface_hub reads HF_ENDPOINT and friends at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env.update(PYTHONPATH=str(ROOT), HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HOME=str(home),
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1")
    return subprocess.run([sys.executable, "-m", "scenetg.cli", "publish", str(out), "--repo-id", "me/scenes"],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_upload_is_one_commit_of_the_validated_files(tmp_path, hub):
    out = make_dataset(tmp_path / "out", audit_rows(), rows_per_shard=5)
    (out / "work").mkdir()
    (out / "work" / "cache.json").write_text("{}")  # work files never leave the machine
    proc = run_publish(out, hub, tmp_path / "hf_home")
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr

    reqs = FakeHub.requests
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in reqs if r["method"] != "PUT")
    commits = [r for r in reqs if r["path"].endswith("/commit/main")]
    assert len(commits) == 1
    lines = [json.loads(ln) for ln in commits[0]["body"].decode().splitlines()]
    assert lines[0]["key"] == "header"
    by_key = {}
    for line in lines[1:]:
        by_key.setdefault(line["key"], {})[line["value"]["path"]] = line["value"]
    expected = sorted(["README.md", "videos.parquet", "scenes.parquet"]
                      + [p.relative_to(out).as_posix() for p in out.glob("data/*.parquet")]
                      + [p.relative_to(out).as_posix() for p in out.glob("audit/*.parquet")])
    assert sorted([*by_key["file"], *by_key["lfsFile"]]) == expected
    assert set(by_key["file"]) == {"README.md"}
    readme = base64.b64decode(by_key["file"]["README.md"]["content"])
    assert readme == (out / "README.md").read_bytes()
    # Every Parquet file went through LFS with its exact bytes, named by its sha256 in the commit.
    for name, value in by_key["lfsFile"].items():
        data = (out / name).read_bytes()
        assert value["oid"] == hashlib.sha256(data).hexdigest()
        assert FakeHub.uploads[value["oid"]] == data
    # The earlier publish's shard that this one does not have goes in the same commit.
    assert set(by_key["deletedFile"]) == {"data/train-00000-of-00009.parquet"}
    assert f"uploaded {len(expected)} file(s)" in proc.stdout


def test_offline_mode_is_named(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = make_dataset(tmp_path / "out", audit_rows())
    assert main(["publish", str(out), "--repo-id", "me/scenes"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: publish to me/scenes needs the network: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set"]


@pytest.mark.slow
def test_rejected_token_is_one_line_without_the_token(tmp_path, hub):
    FakeHub.fail_create = 401
    out = make_dataset(tmp_path / "out", audit_rows())
    proc = run_publish(out, hub, tmp_path / "hf_home")
    assert proc.returncode == 2
    assert TOKEN not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: publish to me/scenes: the Hub answered HTTP 401 at create_repo (check HF_TOKEN or `hf auth login`)"]
    assert not [r for r in FakeHub.requests if r["path"].endswith("/commit/main")]
