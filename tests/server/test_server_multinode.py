"""Two "nodes" on 127.0.0.1: two launches of the server with `--tp-size 2 --nnodes 2
--dist-init-addr HOST:PORT`, `--node-rank 0` (serves HTTP) and `--node-rank 1` (its rank, no
HTTP). They serve the OpenAI client with the greedy text of a one-process engine; killing the
second node's process turns every in-flight request into an error and /health into a 503
naming the lost rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import free_port, start_server, stop_server

WAIT_S = 60  # a safety net against a hang, far above the seconds the failure takes


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, tiny_model):
    logs = tmp_path_factory.mktemp("nodes")
    flags = ["--model-path", tiny_model, "--dtype", "float32", "--tp-size", "2", "--nnodes", "2",
             "--dist-init-addr", f"127.0.0.1:{free_port()}"]
    log1 = open(logs / "node1.log", "w")
    node1 = subprocess.Popen([sys.executable, "-m", "sgl.launch_server", *flags, "--node-rank", "1"],
                             stdout=log1, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        node0 = start_server([*flags, "--node-rank", "0"], str(logs / "node0.log"))
    except BaseException:
        node1.kill()
        raise
    yield node0, node1
    stop_server(node0)
    if node1.poll() is None:
        os.killpg(node1.pid, signal.SIGKILL)
    node1.wait(timeout=20)


def test_two_nodes_serve_the_openai_client(two_nodes, tiny_model):
    import openai
    from sgl.runtime import Engine

    node0, _ = two_nodes
    client = openai.OpenAI(base_url=node0.url + "/v1", api_key="EMPTY", max_retries=0, timeout=120)
    got = client.completions.create(model="m", prompt="The capital of France is", max_tokens=10, temperature=0)
    with Engine(tiny_model, dtype="float32") as one:
        want = one.generate("The capital of France is", {"max_new_tokens": 10, "temperature": 0})
    assert got.choices[0].text == want["text"]
    assert requests.get(node0.url + "/server_info", timeout=30).json()["tp_size"] == 2


def test_killing_the_second_node_fails_every_in_flight_request(two_nodes):
    node0, node1 = two_nodes
    body = {"model": "m", "prompt": "Once upon a time", "max_tokens": 900, "temperature": 0, "ignore_eos": True}
    answers: dict[int, requests.Response] = {}

    def call(i: int) -> None:
        answers[i] = requests.post(node0.url + "/v1/completions", json={**body, "prompt": f"{i} Once"}, timeout=120)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + WAIT_S
    while node0.server_info()["num_running_reqs"] < 3:
        assert time.monotonic() < deadline, "the requests never ran"
        time.sleep(0.05)
    os.killpg(node1.pid, signal.SIGKILL)  # the second node's process (and any child ranks)
    for t in threads:
        t.join(WAIT_S)
    assert not any(t.is_alive() for t in threads), "a request hangs after the node died"
    for r in answers.values():
        assert r.status_code == 500, r.text
        assert "a rank is gone" in r.json()["error"]["message"]
    health = requests.get(node0.url + "/health", timeout=30)
    assert health.status_code == 503 and "a rank is gone" in health.text
    assert node0.proc.poll() is None  # node 0 still answers, with the error, until it is stopped
