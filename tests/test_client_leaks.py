"""Credentials in a scoring URI never show in errors, logs or reprs; header values HTTP cannot carry
(a non-latin-1 token) are refused, not mangled; one loopback rule serves the client and the plugins."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from sei_framework import Client, Endpoint, InvalidRequest, KeyTransportError, ServiceError, is_loopback_host, redact_uri
from sei_framework.cli import cli
from sei_framework.keys import Keyring

PASSWORD = "pw-Never-Shown-91c2"
USER = "alice-user"


@contextmanager
def serve(status: int, body: bytes) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 answering every POST with `status` and `body`; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "uri, shown",
    [
        (f"https://{USER}:{PASSWORD}@scoring.example.net/score", "https://***@scoring.example.net/score"),
        (f"http://{USER}@127.0.0.1:8890/score?x=1", "http://***@127.0.0.1:8890/score?x=1"),
        (f"http://127.0.0.1:1@{PASSWORD}@192.0.2.1/a@b", "http://***@192.0.2.1/a@b"),
        ("https://scoring.example.net/score?user=a@b", "https://scoring.example.net/score?user=a@b"),
        ("", ""),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


def test_endpoint_repr_shows_no_credentials():
    endpoint = Endpoint(f"https://{USER}:{PASSWORD}@scoring.example.net/score", {"Authorization": "Bearer T0k"})
    assert PASSWORD not in repr(endpoint) and "T0k" not in repr(endpoint)
    assert "scoring.example.net/score" in repr(endpoint)


def test_credentials_stay_out_of_errors_and_retry_logs(caplog):
    uri = f"http://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}/score"
    client = Client(uri, retries=2, backoff=0.001)
    with caplog.at_level(logging.INFO, logger="sei_framework"), pytest.raises(ServiceError) as caught:
        client.call({"op": "describe"})
    assert caught.value.code == "unreachable" and "***@127.0.0.1" in caught.value.message
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2
    assert PASSWORD not in caught.value.message + caplog.text and USER not in caught.value.message + caplog.text


def test_credentials_stay_out_of_a_bad_uri_error():
    with pytest.raises(ServiceError) as caught:
        Client(f"http://{USER}:{PASSWORD}@127.0.0.1:notaport/score", retries=0).call({"op": "describe"})
    assert caught.value.code == "unreachable"
    assert PASSWORD not in caught.value.message and USER not in caught.value.message


def test_credentials_stay_out_of_key_transport_errors(tmp_path):
    describe = (
        b'{"service": "s", "models": {"m": {"adapter": "sklearn-packed", "n_features": 10}},'
        b' "key_transport": {"name": "local-dir", "options": {"path": "/elsewhere"}}}'
    )
    with serve(200, describe) as port:
        client = Client(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/score", keyring=Keyring(tmp_path / "keys"))
        with pytest.raises(KeyTransportError) as caught:
            _ = client.transport
    assert caught.value.code == "untrusted_key_transport"
    assert PASSWORD not in caught.value.message and "***@127.0.0.1" in caught.value.message


def test_cli_shows_no_credentials(tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((1, 10)))
    uri = f"http://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}/score"
    result = CliRunner().invoke(cli, ["-v", "predict", "--endpoint", uri, "--model", "m", "--input", str(tmp_path / "rows.npy")])
    assert result.exit_code == 1 and "nothing answers" in result.output
    assert PASSWORD not in result.output


@pytest.mark.parametrize(
    "token, said",
    [
        ("t\u00f6k\u20acn-secret", "outside latin-1"),  # the euro sign would travel as '?'
        ("tok\u2603en-secret", "outside latin-1"),
        ("token-secret\r\nX-Injected: 1", "control characters"),
        ("token-secret\n", "control characters"),
    ],
)
def test_a_token_http_cannot_carry_is_refused_before_sending(no_network, token, said):
    for endpoint in ("http://127.0.0.1:9/score", "https://scoring.example.net/score"):
        with pytest.raises(InvalidRequest) as caught:
            Client(Endpoint(endpoint, {"Authorization": f"Bearer {token}"}), retries=0).call({"op": "describe"})
        assert caught.value.code == "invalid_header" and said in caught.value.message
        assert "secret" not in caught.value.message and "Authorization" in caught.value.message
    assert no_network == []


def test_a_latin1_token_is_sent_unchanged(no_network):
    token = "Bearer caf\u00e9-token"
    with pytest.raises(ServiceError):
        Client(Endpoint("https://scoring.example.net/score", {"Authorization": token}), retries=0).call({"op": "x"})
    assert [r.headers["Authorization"] for r in no_network] == [token]


def test_cli_refuses_a_non_latin1_token(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SEI_TEST_TOKEN", "t\u00f6k\u20acn-secret")
    np.save(tmp_path / "rows.npy", np.zeros((1, 10)))
    args = ["predict", "--endpoint", "https://scoring.example.net/score", "--model", "m"]
    result = CliRunner().invoke(cli, [*args, "--input", str(tmp_path / "rows.npy"), "--token-env", "SEI_TEST_TOKEN"])
    assert result.exit_code == 3 and "outside latin-1" in result.output and "secret" not in result.output
    assert no_network == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.9.0.1", "localhost", "LOCALHOST", "[::1]", "[::ffff:127.0.0.1]", "192.0.2.1", "[::]",
             "localhost.example.com", "0.0.0.0"],
)  # fmt: skip
def test_the_blob_transport_uses_the_one_loopback_rule(host):
    from sei_transport_azure_blob.options import AzureBlobOptions

    url = f"http://{host}:10000/devstoreaccount1"
    try:
        AzureBlobOptions(container="keys", account_url=url)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is is_loopback_host(host)
