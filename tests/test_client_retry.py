"""Client.call against a real HTTP server: what is retried, how long it waits, and what it says."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

from sei_framework import Client, Deployment, Endpoint, ServiceError
from sei_framework.keys import Keyring
from sei_framework.serving import ScoringService

Answer = tuple[int, dict]  # (HTTP status, JSON body)
OK: Answer = (200, {"ok": True})


def error(status: int, code: str) -> Answer:
    return status, {"error": {"code": code, "message": f"test {code}"}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that timed out and left
        pass


@contextmanager
def serve(answer: Callable[[int, bytes], Answer | tuple[int, dict, float]]) -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP server on 127.0.0.1 whose n-th POST (from 0) gets `answer(n, body)`, optionally after
    a delay; yields its scoring URI and the bodies it received."""
    received: list[bytes] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                received.append(body)
                n = len(received) - 1
            status, payload, *delay = answer(n, body)
            if delay:
                time.sleep(delay[0])
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/score", received
    finally:
        server.shutdown()
        server.server_close()


def scripted(*answers: Answer) -> Callable[[int, bytes], Answer]:
    """Answer the n-th request with answers[n]; the last answer repeats."""
    return lambda n, body: answers[min(n, len(answers) - 1)]


def fast_client(uri: str, **kwargs) -> Client:
    return Client(uri, **{"retries": 4, "backoff": 0.001, "max_backoff": 0.01, **kwargs})


def test_502_503_504_are_retried_until_the_service_answers():
    with serve(scripted(error(503, "busy"), error(502, "bad_gateway"), (504, {}), OK)) as (uri, received):
        assert fast_client(uri).call({"op": "describe"}) == {"ok": True}
    assert len(received) == 4 and {json.loads(body)["op"] for body in received} == {"describe"}


def test_retries_are_bounded_and_the_last_answer_is_the_error():
    with serve(scripted(error(503, "overloaded"))) as (uri, received):
        with pytest.raises(ServiceError) as caught:
            fast_client(uri, retries=2).call({"op": "describe"})
    assert len(received) == 3
    assert (caught.value.code, caught.value.status) == ("overloaded", 503)
    assert "after 3 attempts" in str(caught.value)


@pytest.mark.parametrize(
    "answer", [error(400, "invalid_request"), error(404, "unknown_key_id"), error(500, "internal"), (429, {})]
)
def test_other_errors_are_not_retried(answer):
    with serve(scripted(answer, OK)) as (uri, received):
        with pytest.raises(ServiceError) as caught:
            fast_client(uri).call({"op": "describe"})
    assert len(received) == 1 and caught.value.status == answer[0]


def test_a_timeout_is_retried():
    def slow_then_fast(n: int, body: bytes):
        return (*OK, 2.0) if n == 0 else OK

    with serve(slow_then_fast) as (uri, received):
        assert fast_client(uri, timeout=0.5).call({"op": "describe"}) == {"ok": True}
    assert len(received) == 2


def test_backoff_is_exponential_capped_and_jittered(monkeypatch):
    import sei_framework.client as client_module

    waits: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", waits.append)
    with serve(scripted(error(503, "busy"))) as (uri, _):
        with pytest.raises(ServiceError):
            Client(uri, retries=6, backoff=0.01, max_backoff=0.05).call({"op": "describe"})
        caps = [0.01, 0.02, 0.04, 0.05, 0.05, 0.05]
        assert len(waits) == 6 and all(0 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))
        waits.clear()
        monkeypatch.setattr(client_module.random, "uniform", lambda low, high: high)  # the longest draw
        with pytest.raises(ServiceError):
            Client(uri, retries=6, backoff=0.01, max_backoff=0.05).call({"op": "describe"})
        assert waits == pytest.approx(caps)


def test_a_closed_port_says_the_service_may_have_moved(monkeypatch):
    with socket.socket() as probe:  # a port that nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = Endpoint(f"http://127.0.0.1:{port}/score", headers={"Authorization": "Bearer TOKEN-123"})
    client = fast_client(endpoint, retries=3)
    attempts = []
    post = client._session.post
    monkeypatch.setattr(client._session, "post", lambda *a, **k: attempts.append(1) or post(*a, **k))
    with pytest.raises(ServiceError) as caught:
        client.call({"op": "describe"})
    message = str(caught.value)
    assert len(attempts) == 4 and (caught.value.code, caught.value.status) == ("unreachable", 0)
    assert f"nothing answers at http://127.0.0.1:{port}/score" in message
    assert "port: 0" in message and "sei deploy" in message and "4 attempts" in message
    assert "TOKEN-123" not in message and "Authorization" not in message


def test_keys_replaced_in_the_transport_are_published_again(model_files, tmp_path):
    """The service restarted (its key cache is empty) and the published key file was overwritten:
    the service answers key_mismatch, and the client publishes its keys once more and gets its answer."""
    shared = tmp_path / "published"
    config = {
        "name": "retry",
        "models": [{"name": "m", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])}],
        "key_transport": {"name": "local-dir", "options": {"path": str(shared)}},
    }
    (tmp_path / "retry.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(tmp_path / "retry.yaml").build(tmp_path / "build")
    services = [ScoringService.from_build(build.path)]
    codes: list[str] = []

    def handle(n: int, body: bytes) -> Answer:
        answer, status = services[-1].handle(body)
        codes.append(answer.get("error", {}).get("code", "ok"))
        return status, answer

    _, model, X = model_files["diabetes"]
    with serve(handle) as (uri, _):
        transport = Deployment.from_file(tmp_path / "retry.yaml").key_transport()  # local-dir: the user's own
        client = fast_client(uri, keyring=Keyring(tmp_path / "keys"), transport=transport)
        np.testing.assert_allclose(client.predict("m", X[:2]).predictions, model.predict(X[:2]), atol=1e-3)
        (published,) = shared.iterdir()
        published.write_bytes(b"not the keys this key id names")
        services.append(ScoringService.from_build(build.path))  # a restart: nothing cached
        np.testing.assert_allclose(client.predict("m", X[2:4]).predictions, model.predict(X[2:4]), atol=1e-3)
    assert codes == ["ok", "ok", "key_mismatch", "ok"]  # describe, predict, refused predict, predict
