"""Caption backends: the tiny Qwen locally, and an OpenAI-compatible server run by the test."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from scenetg.config import CaptionsConfig, OpenAIConfig
from scenetg.curate.stages.captions import (
    CaptionBackend,
    OpenAICaptioner,
    SceneFrames,
    TransformersCaptioner,
    check_caption_model,
    clean_caption,
    make_caption_backend,
)
from scenetg.errors import ModelError

SERVED_MODEL = "tiny-qwen"


def _scene(k: int, start_s: float, duration_s: float, seed: int, size=(48, 64)) -> SceneFrames:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (*size, 3), dtype=np.uint8)
    frames = [np.clip(base.astype(int) + 6 * i, 0, 255).astype(np.uint8) for i in range(k)]
    times = [start_s + (i + 0.5) * duration_s / k for i in range(k)]
    return SceneFrames(frames=frames, times_s=times, duration_s=duration_s)


@pytest.fixture(scope="module")
def scenes() -> list[SceneFrames]:
    return [
        _scene(8, 0.0, 4.0, 0),
        _scene(3, 4.0, 6.0, 1),
        _scene(5, 10.0, 2.5, 2, size=(64, 48)),
        _scene(1, 12.5, 3.0, 3, size=(32, 32)),
        _scene(8, 15.5, 20.0, 4, size=(90, 120)),
    ]


@pytest.fixture(scope="module")
def captioner(tiny_models) -> TransformersCaptioner:
    cfg = CaptionsConfig(
        model=str(tiny_models["qwen"]), device="cpu", batch_size=3, max_new_tokens=12
    )
    backend = make_caption_backend(cfg)
    assert isinstance(backend, TransformersCaptioner)
    return backend


def test_transformers_captions_are_single_line_and_deterministic(captioner, scenes):
    assert isinstance(captioner, CaptionBackend)
    assert captioner.model_name == "qwen"  # the folder name, never an absolute path
    first = captioner.caption_scenes(scenes)
    assert len(first) == len(scenes)
    assert all(isinstance(c, str) and "\n" not in c and c == c.strip() for c in first)
    assert captioner.caption_scenes(scenes) == first
    assert captioner.caption_scenes([]) == []


def test_batching_gives_the_same_captions_as_one_by_one(captioner, tiny_models, scenes):
    batched = captioner.caption_scenes(scenes)  # batch_size 3, mixed lengths and frame sizes
    cfg = CaptionsConfig(
        model=str(tiny_models["qwen"]), device="cpu", batch_size=1, max_new_tokens=12
    )
    single = TransformersCaptioner(cfg, model=captioner.model, processor=captioner.processor)
    assert single.caption_scenes(scenes) == batched


def test_bare_frame_lists_are_rejected(captioner, scenes):
    with pytest.raises(TypeError, match="times_s"):
        captioner.caption_scenes([scenes[0].frames])


def test_clean_caption():
    assert clean_caption("  A dog\n runs.\n\n ") == "A dog runs."
    assert clean_caption("<think>hmm\nmaybe</think>\nA red car.") == "A red car."
    assert clean_caption("plan</think> A cat.") == "A cat."
    assert clean_caption("A cat.<think>unfinished") == "A cat."
    assert clean_caption("a\x1d b\tc") == "a b c"
    assert clean_caption("") == ""


def test_missing_caption_model_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = CaptionsConfig(model="scenetg-test/no-such-vlm")
    with pytest.raises(ModelError, match="--caption-model"):
        check_caption_model(cfg)
    with pytest.raises(ModelError, match="--caption-model"):
        make_caption_backend(cfg)


# --- openai backend against a local chat-completions server -------------------------------------


class _FakeVLLM(ThreadingHTTPServer):
    """127.0.0.1 server speaking GET /v1/models and POST /v1/chat/completions.

    It decodes the received JPEG frames and answers with the tiny Qwen's caption for them; it
    records the peak number of requests in flight, and can fail the first N requests with a 500.
    """

    daemon_threads = True

    def __init__(self, captioner: TransformersCaptioner, fail_first: int = 0, delay_s: float = 0.1):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.captioner = captioner
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.posts = 0
        self.bodies: list[dict] = []
        self.replies: dict[int, str] = {}  # number of frames -> caption sent

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _FakeVLLM

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._send(404, {"error": {"message": "not found"}})
            return
        self._send(
            200,
            {
                "object": "list",
                "data": [{"id": SERVED_MODEL, "object": "model", "created": 0, "owned_by": "test"}],
            },
        )

    def do_POST(self) -> None:
        from PIL import Image

        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.posts += 1
            fail = srv.posts <= srv.fail_first
            srv.in_flight += 1
            srv.peak_in_flight = max(srv.peak_in_flight, srv.in_flight)
        try:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            if fail:
                self._send(500, {"error": {"message": "try again"}}, {"retry-after-ms": "10"})
                return
            srv.bodies.append(body)
            frames = []
            for part in body["messages"][0]["content"]:
                if part["type"] == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    frames.append(
                        np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                    )
            time.sleep(srv.delay_s)  # hold the request so concurrent ones overlap
            with srv.model_lock:
                scene = SceneFrames(frames=frames, times_s=[float(i) for i in range(len(frames))])
                caption = srv.captioner.caption_scenes([scene])[0]
                srv.replies[len(frames)] = caption
            self._send(
                200,
                {
                    "id": f"chatcmpl-{srv.posts}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"\n {caption}\n"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )
        finally:
            with srv.lock:
                srv.in_flight -= 1


@pytest.fixture
def fake_server(captioner, request):
    fail_first = getattr(request, "param", 0)
    server = _FakeVLLM(captioner, fail_first=fail_first)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _openai_cfg(server: _FakeVLLM, **kw) -> CaptionsConfig:
    oa = {
        "base_url": server.base_url,
        "api_key_env": "SCENETG_TEST_NO_SUCH_KEY",
        "concurrency": 2,
        "max_retries": 3,
        "timeout_s": 30.0,
    }
    oa.update(kw)
    return CaptionsConfig(
        backend="openai", model=SERVED_MODEL, max_new_tokens=12, openai=OpenAIConfig(**oa)
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.parametrize("fake_server", [1], indirect=True)
def test_openai_backend_concurrency_order_and_retry(fake_server, scenes):
    # Distinct frame counts identify which scene each server reply belongs to.
    picked = [
        scenes[0],
        scenes[1],
        scenes[2],
        scenes[3],
        _scene(2, 40.0, 2.0, 9),
        _scene(6, 50.0, 3.0, 10),
    ]
    backend = make_caption_backend(_openai_cfg(fake_server))
    assert isinstance(backend, OpenAICaptioner) and backend.model_name == SERVED_MODEL
    captions = backend.caption_scenes(picked)
    assert fake_server.posts == len(picked) + 1  # the first request got a 500 and was retried
    assert captions == [
        fake_server.replies[len(s.frames)] for s in picked
    ]  # order preserved, cleaned
    assert all("\n" not in c and c == c.strip() for c in captions)
    assert fake_server.peak_in_flight == 2  # concurrency 2: bounded, and actually concurrent
    body = fake_server.bodies[0]
    assert body["model"] == SERVED_MODEL and body["temperature"] == 0 and body["max_tokens"] == 12
    urls = [
        p["image_url"]["url"] for p in body["messages"][0]["content"] if p["type"] == "image_url"
    ]
    assert urls and all(u.startswith("data:image/jpeg;base64,") for u in urls)


@pytest.mark.parametrize("fake_server", [100], indirect=True)
def test_openai_backend_gives_up_with_model_error(fake_server, scenes):
    backend = OpenAICaptioner(_openai_cfg(fake_server, max_retries=1))
    with pytest.raises(ModelError, match="500"):
        backend.caption_scenes(scenes[:1])
    assert fake_server.posts == 2


def test_openai_availability_check(fake_server):
    check_caption_model(_openai_cfg(fake_server))
    wrong = _openai_cfg(fake_server)
    wrong.model = "some-other-model"
    with pytest.raises(ModelError, match="does not serve"):
        check_caption_model(wrong)


def test_openai_unreachable_server_names_base_url():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = CaptionsConfig(
        backend="openai",
        model=SERVED_MODEL,
        openai=OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1"),
    )
    with pytest.raises(ModelError, match=f"127.0.0.1:{port}"):
        check_caption_model(cfg)
