"""http(s) media URLs: fetched only by a server started with --allow-url-media. A real file
server on 127.0.0.1 serves a PNG and an mp4 to a tiny random Qwen2-VL server; answers equal the
same media sent as data; a missing file, a wrong kind of file, a body past the fetch limit and
a dead host each get a 400 naming the field, and the server keeps serving. A server started
without the flag refuses URLs without fetching them."""

from __future__ import annotations

import base64
import functools
import http.server
import os
import sys
import threading
from collections.abc import Iterator

import openai
import pytest
import requests
from conftest import ServerProcess, free_port, start_server, stop_server

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime"))
from mm_fixtures import QWEN_IMAGE, QWEN_VIDEO, png_bytes, random_image, write_video  # noqa: E402

GREEDY = {"max_new_tokens": 8, "temperature": 0}
HUGE_BYTES = 300 << 20  # past the server's fetch limit (multimodal/media.py MAX_URL_BYTES)


class FileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /huge.png claims a body past the fetch limit. Counts the GETs."""

    gets: list[str] = []

    def do_GET(self) -> None:
        FileHandler.gets.append(self.path)
        if self.path == "/huge.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n")
            return
        super().do_GET()

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def media_host(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("served")
    (root / "a.png").write_bytes(png_bytes(random_image(3)))
    (root / "notes.png").write_text("a text file, not an image")
    write_video(str(root / "clip.mp4"), frames=10, size=(32, 40))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(FileHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield {"base": base, "root": str(root)}
    httpd.shutdown()


@pytest.fixture(scope="module")
def url_server(tmp_path_factory, mm_model) -> Iterator[ServerProcess]:
    log = str(tmp_path_factory.mktemp("urls") / "server.log")
    srv = start_server(["--model-path", mm_model, "--dtype", "float32", "--allow-url-media"], log)
    yield srv
    stop_server(srv)


def b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def generate(server: ServerProcess, text: str, **media) -> requests.Response:
    return requests.post(server.url + "/generate", json={"text": text, "sampling_params": GREEDY, **media}, timeout=120)


def test_urls_are_fetched_and_answer_as_the_same_data(url_server, media_host):
    base, root = media_host["base"], media_host["root"]
    text = f"See {QWEN_IMAGE} and {QWEN_VIDEO} now"
    FileHandler.gets.clear()
    by_url = generate(url_server, text, image_data=base + "/a.png", video_data=base + "/clip.mp4")
    assert by_url.status_code == 200, by_url.text
    assert sorted(FileHandler.gets) == ["/a.png", "/clip.mp4"]
    by_data = generate(url_server, text, image_data=b64(os.path.join(root, "a.png")),
                       video_data=b64(os.path.join(root, "clip.mp4"))).json()
    assert by_url.json()["text"] == by_data["text"]
    assert by_url.json()["meta_info"]["prompt_tokens"] == by_data["meta_info"]["prompt_tokens"]

    client = openai.OpenAI(base_url=url_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    parts = [{"type": "image_url", "image_url": {"url": base + "/a.png"}}, {"type": "text", "text": "What is it?"}]
    data_parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(os.path.join(root, "a.png"))}},
                  parts[1]]
    answers = [client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}], max_tokens=8,
                                              temperature=0).choices[0].message.content for p in (parts, data_parts)]
    assert answers[0] == answers[1]


def test_bad_urls_are_a_400_naming_the_field(url_server, media_host):
    base, prompt = media_host["base"], f"See {QWEN_IMAGE} now"
    cases = {
        "missing file": (base + "/nope.png", "could not fetch"),
        "not an image": (base + "/notes.png", "not a readable image"),
        "past the fetch limit": (base + "/huge.png", f"is {HUGE_BYTES} bytes"),
        "nobody listening": (f"http://127.0.0.1:{free_port()}/a.png", "could not fetch"),
    }
    for name, (url, message) in cases.items():
        r = generate(url_server, prompt, image_data=url)
        assert r.status_code == 400, (name, r.text)
        assert "image_data" in r.json()["error"]["message"] and message in r.json()["error"]["message"], (name, r.text)
    assert generate(url_server, prompt, image_data=base + "/a.png").status_code == 200
    assert url_server.wait_idle()["held_slots"] == 0


def test_a_server_without_the_flag_fetches_nothing(mm_server, media_host):
    base = media_host["base"]
    FileHandler.gets.clear()
    r = generate(mm_server, f"See {QWEN_IMAGE} now", image_data=base + "/a.png")
    assert r.status_code == 400 and "--allow-url-media" in r.json()["error"]["message"]
    client = openai.OpenAI(base_url=mm_server.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    video = {"type": "video_url", "video_url": {"url": base + "/clip.mp4"}}
    with pytest.raises(openai.BadRequestError, match="--allow-url-media"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [video]}], max_tokens=4)
    assert FileHandler.gets == []
