"""The local target's server under hostile clients: idle connections, huge bodies, odd content types, logs.

One sklearn-packed service for the module, served by azmlinfsrv as `sei deploy` serves it.
"""

from __future__ import annotations

import json
import socket
import stat
import threading
import time

import numpy as np
import psutil
import pytest
import requests
import yaml
from conftest import with_bounds

from sei_framework import Client, Deployment
from sei_framework.keys import Keyring

LIMIT_MB = 8
LIMIT = LIMIT_MB * 1024 * 1024
SECRET = "qs-secret-5b2e7c91d0"


@pytest.fixture(scope="module")
def service(model_files, tmp_path_factory):
    """(deployment, endpoint, state folder, home): the gunicorn control socket would go under `home`."""
    tmp = tmp_path_factory.mktemp("hardening")
    config = {
        "name": "hardened",
        "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])})],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": {"state_dir": str(tmp / "state")}},
        "limits": {"max_request_mb": LIMIT_MB},
    }
    (tmp / "hardened.yaml").write_text(yaml.safe_dump(config))
    deployment = Deployment.from_file(tmp / "hardened.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp / "home"))  # gunicorn's default control socket: $HOME/.gunicorn/gunicorn.ctl
        patch.delenv("XDG_RUNTIME_DIR", raising=False)
        endpoint = deployment.deploy(tmp / "build")
    try:
        yield deployment, endpoint, tmp / "state" / "hardened", tmp / "home"
    finally:
        deployment.delete()


@pytest.fixture(scope="module")
def packed_request(service, model_files, tmp_path_factory):
    """A predict body for keys the service already holds, and how to check its answer."""
    _, endpoint, _, _ = service
    _, model, X = model_files["diabetes"]
    client = Client(endpoint, keyring=Keyring(tmp_path_factory.mktemp("keys")))
    np.testing.assert_allclose(client.predict("diabetes", X[:1]).predictions, model.predict(X[:1]), atol=1e-3)
    session = client.session("diabetes")
    body = json.dumps({"model": "diabetes", "key_id": session.key_id, "data": session.adapter.encrypt(X[:1])})

    def check(answer: dict) -> None:
        np.testing.assert_allclose(session.adapter.decrypt(answer["result"], 1)[:, 0], model.predict(X[:1]), atol=1e-3)

    return body, check


def address(endpoint) -> tuple[str, int]:
    host, port = endpoint.scoring_uri.split("//", 1)[1].split("/", 1)[0].split(":")
    return host, int(port)


def quickest(call, attempts: int = 3) -> float:
    """The quickest of a few timed calls (a loaded machine may slow one); a stalled call counts as 60 s."""
    best = 60.0
    for _ in range(attempts):
        start = time.perf_counter()
        try:
            call()
        except requests.Timeout:
            continue
        best = min(best, time.perf_counter() - start)
        if best < 0.5:
            break
    return best


def test_idle_and_slow_clients_do_not_stall_anyone(service, packed_request):
    _, endpoint, _, _ = service
    body, check = packed_request
    health = endpoint.scoring_uri.replace("/score", "/")
    idle = []
    try:
        for i in range(100):
            sock = socket.create_connection(address(endpoint), timeout=10)
            if i % 5 == 0:
                sock.sendall(b"GET / HTTP/1.1\r\n")  # a request line, and then nothing
            elif i % 5 == 1:
                sock.sendall(b"POST /sco")  # half a request line
            idle.append(sock)
        stalled = socket.create_connection(address(endpoint), timeout=30)
        stalled.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # and no more
        idle.append(stalled)

        def probe():
            assert requests.get(health, timeout=5).status_code == 200

        def predict():
            response = requests.post(endpoint.scoring_uri, data=body, timeout=5)
            assert response.status_code == 200, response.text
            check(response.json())

        latencies = {"health": quickest(probe), "predict": quickest(predict)}
        print(f"with 100 idle connections open: {latencies}")
        assert latencies["health"] < 1.0 and latencies["predict"] < 1.0, latencies
        # headers must arrive within gunicorn's keepalive (5 s): then the server hangs up
        deadline = time.monotonic() + 30
        for sock in idle[:-1]:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                assert sock.recv(1024) == b""
            except ConnectionResetError:
                pass
        # a body that stalls for 10 s is refused
        assert stalled.recv(65536).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in idle:
            sock.close()


def raw_exchange(endpoint, head: bytes, body_chunks=(), read_timeout: float = 20) -> tuple[int, dict]:
    """Send `head` and (from a thread, errors ignored) the body; return the status and JSON answer."""
    sock = socket.create_connection(address(endpoint), timeout=read_timeout)

    def send_body():
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server may hang up on a refused body

    try:
        sock.sendall(head)
        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536) or b"!" * 4 + b"\r\n\r\n"
        head_bytes, rest = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head_bytes.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += sock.recv(65536)
        return int(head_bytes.split()[1]), json.loads(rest[:length])
    finally:
        sock.close()


def worker_rss(state) -> int:
    """The resident memory of the server's workers."""
    server = psutil.Process(json.loads((state / "state.json").read_text())["pid"])
    return sum(p.memory_info().rss for p in server.children(recursive=True))


def test_an_oversized_body_is_refused_before_it_is_read(service):
    _, endpoint, state, _ = service
    head = (
        b"POST /score HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 300000000\r\n\r\n"
    )
    before = worker_rss(state)
    start = time.perf_counter()
    status, answer = raw_exchange(endpoint, head)  # no body sent at all: the answer cannot wait for it
    assert time.perf_counter() - start < 5
    assert (status, answer["error"]["code"]) == (413, "request_too_large"), answer
    assert f"request body is 300000000 bytes; this service accepts at most {LIMIT}" in answer["error"]["message"]

    # a chunked body is read up to the limit and no further; the worker does not keep it
    megabyte = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
    head = b"POST /score HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, answer = raw_exchange(endpoint, head, [megabyte] * (3 * LIMIT_MB))
    assert (status, answer["error"]["code"]) == (413, "request_too_large"), answer
    assert f"request body is over {LIMIT} bytes" in answer["error"]["message"]
    assert worker_rss(state) - before < 3 * LIMIT, (before, worker_rss(state))

    # the bodies a worker holds at once are bounded too: a few at the limit, stalled, fill its budget
    from sei_deploy_local.guard import BUDGET_BODIES

    chunked = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    stalled = [socket.create_connection(address(endpoint), timeout=30) for _ in range(BUDGET_BODIES)]
    try:
        for sock in stalled:
            sock.sendall(chunked + b"%x\r\n" % LIMIT + b"x" * LIMIT + b"\r\n")  # and then no more
        time.sleep(1)
        busy = requests.post(endpoint.scoring_uri, data=json.dumps({"op": "describe"}), timeout=30)
        assert_error(busy, 503, "busy", "retry shortly")
        assert busy.headers["Retry-After"] == "1"
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 10
    while requests.post(endpoint.scoring_uri, data=json.dumps({"op": "describe"}), timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the budget was not given back"
        time.sleep(0.2)

    # within the limit, chunked or not, the request reaches score.py
    describe = json.dumps({"op": "describe"}).encode()
    for head in (
        b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(describe),
    ):
        chunks = [b"%x\r\n%s\r\n0\r\n\r\n" % (len(describe), describe)] if b"chunked" in head else [describe]
        status, answer = raw_exchange(endpoint, head, chunks)
        assert status == 200 and answer["limits"]["max_request_bytes"] == LIMIT, answer


def assert_error(response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, (code, response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert response.json() == {"error": {"code": code, "message": response.json()["error"]["message"]}}
    assert message in response.json()["error"]["message"], response.json()


def test_every_answer_is_json_and_any_content_type_reaches_score_py(service):
    _, endpoint, _, _ = service
    uri = endpoint.scoring_uri
    describe = json.dumps({"op": "describe"})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None, "application/json; charset=utf-8"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = requests.post(uri, data=describe.encode(), headers=headers, timeout=30)
        assert response.status_code == 200 and response.json()["service"] == "hardened", (content_type, response.text)

    post = lambda data, **kw: requests.post(uri, data=data, timeout=30, **kw)  # noqa: E731
    assert_error(post(b'{"op": "describe", "x": "\xff"}'), 400, "invalid_encoding", "request body must be UTF-8 JSON")
    assert_error(post(b""), 400, "invalid_json", "request body is empty")
    assert_error(post(b"{not json"), 400, "invalid_json", "not valid JSON")
    files = {"request": ("request.json", describe)}
    assert_error(requests.post(uri, files=files, timeout=30), 415, "unsupported_media_type", "Content-Type: application/json")
    base = uri.removesuffix("/score")
    assert_error(requests.get(base + "/nothing-here", timeout=30), 404, "not_found", "POST /score")
    assert_error(requests.post(base + "/", data=describe, timeout=30), 405, "method_not_allowed", "POST /score")
    assert_error(requests.get(uri, timeout=30), 405, "method_not_allowed", "send POST /score")
    assert_error(requests.put(uri, data=describe, timeout=30), 405, "method_not_allowed", "send POST /score")

    status, answer = raw_exchange(endpoint, b"NOT HTTP AT ALL\r\n\r\n")  # gunicorn's own refusal
    assert (status, answer["error"]["code"]) == (400, "bad_request"), answer
    assert "malformed HTTP request" in answer["error"]["message"]


def test_logs_are_private_rotated_and_carry_no_secret(service):
    deployment, endpoint, state, home = service
    log = state / "server.log"
    bearer = f"Bearer {SECRET}-header"
    response = requests.post(
        f"{endpoint.scoring_uri}?token={SECRET}", data="{not json",
        headers={"Authorization": bearer, "Referer": f"http://x/?token={SECRET}"}, timeout=30,
    )  # fmt: skip
    assert response.json()["error"]["code"] == "invalid_json"
    requests.post(endpoint.scoring_uri, data=b"x" * (LIMIT + 1), timeout=30)
    time.sleep(0.5)  # the log is written by another process
    text = log.read_text(errors="replace")
    assert '"POST /score HTTP/1.1" 400' in text  # the access log line, without its query string
    assert "request refused: invalid_json (request body is not valid JSON)" in text  # serving.py's own line
    assert "request refused: request_too_large" in text  # and the guard's
    assert SECRET not in text and "?token" not in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "gunicorn.conf.py").stat().st_mode) == 0o600
    assert not (home / ".gunicorn").exists()  # no control socket shared by every deployment
    assert not list(state.glob("*.ctl"))

    deployment.deploy(state.parent.parent / "build")  # a redeploy keeps the previous log
    assert "request refused: invalid_json" in (state / "server.log.1").read_text(errors="replace")
    assert stat.S_IMODE((state / "server.log.1").stat().st_mode) == 0o600
    assert "request refused" not in log.read_text(errors="replace")
