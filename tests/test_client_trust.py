"""The client trusts its user, not the service: key transports with credentials or files are
configured by the user, and headers (tokens) never travel over plain http beyond loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import with_bounds

from sei_framework import Client, Deployment, Endpoint, KeyTransportError, SeiError, ServiceError
from sei_framework.cli import cli
from sei_framework.client import is_loopback_host
from sei_framework.keys import Keyring
from sei_framework.serving import ScoringService

TOKEN = "TOKEN-never-in-clear-7f3a"
TEST_NET = "192.0.2.1"  # RFC 5737 TEST-NET-1: routes nowhere


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    uri: str
    requests: list[Recorded] = field(default_factory=list)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


@contextmanager
def serve(answer: Callable[[Recorded], tuple[int, dict, dict[str, str]]]) -> Iterator[Server]:
    """A real HTTP server on 127.0.0.1 that records every request, whatever its method and path."""
    lock = threading.Lock()
    server_info = Server("")

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            request = Recorded(self.command, self.path, dict(self.headers), body)
            with lock:
                server_info.requests.append(request)
            status, payload, extra = answer(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **extra}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _any

        def log_message(self, *args) -> None:
            pass

    httpd = _HTTPServer(("127.0.0.1", 0), Handler)
    server_info.uri = f"http://127.0.0.1:{httpd.server_address[1]}/score"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server_info
    finally:
        httpd.shutdown()
        httpd.server_close()


def describing(transport: dict) -> Callable[[Recorded], tuple[int, dict, dict]]:
    """A fake service whose describe answer names `transport`; everything else is refused."""

    def answer(request: Recorded) -> tuple[int, dict, dict]:
        if request.method == "POST" and json.loads(request.body or b"{}").get("op") == "describe":
            model = {"adapter": "sklearn-packed", "n_features": 10}
            return 200, {"service": "evil", "models": {"m": model}, "key_transport": transport}, {}
        return 400, {"error": {"code": "nope", "message": "nope"}}, {}

    return answer


def all_headers(server: Server) -> str:
    return json.dumps([r.headers for r in server.requests])


@pytest.fixture(scope="module")
def local_dir_service(tmp_path_factory, model_files):
    """A real in-process scoring service (sklearn-packed, local-dir keys) and its config file."""
    tmp = tmp_path_factory.mktemp("trust")
    config = {
        "name": "trust",
        "models": [with_bounds({"name": "m", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])})],
        "key_transport": {"name": "local-dir", "options": {"path": str(tmp / "shared")}},
    }
    (tmp / "trust.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(tmp / "trust.yaml").build(tmp / "build")
    return ScoringService.from_build(build.path), tmp / "trust.yaml", tmp / "shared"


def real_service(service: ScoringService, describe_transport: dict | None = None):
    """Answer with `service`; a spoofed describe answer names `describe_transport` instead."""

    def answer(request: Recorded) -> tuple[int, dict, dict]:
        body, status = service.handle(request.body)
        if describe_transport is not None and "key_transport" in body:
            body = {**body, "key_transport": describe_transport}
        return status, body, {}

    return answer


# -- key transports: the user's, never the service's -----------------------------------------------


def test_local_dir_destination_from_the_service_is_refused_and_nothing_is_created(local_dir_service, tmp_path):
    service, _, _ = local_dir_service
    planted = tmp_path / "attacker" / "chosen"
    spoof = {"name": "local-dir", "options": {"path": str(planted)}}
    with serve(real_service(service, spoof)) as server:
        client = Client(server.uri, keyring=Keyring(tmp_path / "keys"))
        with pytest.raises(KeyTransportError) as caught:
            client.predict("m", np.zeros((1, 10)))
    assert caught.value.code == "untrusted_key_transport"
    message = caught.value.message
    assert "'local-dir'" in message and str(planted) in message
    assert "--config" in message and "transport=" in message and "--trust-service-transport" in message
    assert not (tmp_path / "attacker").exists()
    assert [json.loads(r.body).get("op") for r in server.requests] == ["describe"]  # nothing else was sent


def test_azure_blob_account_from_the_service_never_gets_a_token(local_dir_service, tmp_path, monkeypatch):
    pytest.importorskip("azure.identity", reason="needs the [azure-blob] extra")
    import azure.identity
    from azure.core.credentials import AccessToken

    asked: list[tuple] = []

    class RecordingCredential:  # stands in for the user's DefaultAzureCredential
        def __init__(self, *args, **kwargs) -> None:
            pass

        def get_token(self, *scopes, **kwargs):
            asked.append(scopes)
            return AccessToken(TOKEN, 2**31)

        def close(self) -> None:
            pass

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", RecordingCredential)
    monkeypatch.delenv("SEI_BLOB_CONNECTION", raising=False)
    with serve(lambda request: (404, {}, {})) as attacker:  # the account the spoofed service names
        account = attacker.uri.replace("http://", "https://").removesuffix("/score")
        spoof = {"name": "azure-blob", "options": {"container": "keys", "account_url": account}}
        with serve(real_service(local_dir_service[0], spoof)) as server:
            client = Client(server.uri, keyring=Keyring(tmp_path / "keys"))
            with pytest.raises(KeyTransportError) as caught:
                client.predict("m", np.zeros((1, 10)))
    assert asked == []  # the user's identity was never asked for a storage token
    assert attacker.requests == []
    assert TOKEN not in all_headers(server) + all_headers(attacker)
    assert caught.value.code == "untrusted_key_transport"
    assert "'azure-blob'" in caught.value.message and account in caught.value.message


def test_the_users_own_transport_or_an_explicit_opt_in_works(local_dir_service, model_files, tmp_path):
    service, config, shared = local_dir_service
    _, model, X = model_files["diabetes"]
    with serve(real_service(service)) as server:
        own = Deployment.from_file(config).client(server.uri, keyring=Keyring(tmp_path / "keys"))
        np.testing.assert_allclose(own.predict("m", X[:2]).predictions, model.predict(X[:2]), atol=1e-3)
        trusting = Client(server.uri, keyring=Keyring(tmp_path / "keys2"), trust_service_transport=True)
        np.testing.assert_allclose(trusting.predict("m", X[:1]).predictions, model.predict(X[:1]), atol=1e-3)
        wrong = Client(server.uri, keyring=Keyring(tmp_path / "keys3"), transport=inline_transport())
        with pytest.raises(KeyTransportError) as caught:
            wrong.predict("m", X[:1])
    assert caught.value.code == "key_transport_mismatch"
    for client in (own, trusting):
        assert (shared / f"{client.session('m').key_id}.keys").is_file()


def inline_transport():
    from sei_transport_inline import InlineTransport

    return InlineTransport(InlineTransport.Options())


def test_inline_needs_no_configuration(tmp_path):
    with serve(describing({"name": "inline", "options": {}})) as server:
        assert Client(server.uri, keyring=Keyring(tmp_path / "keys")).transport.name == "inline"


def test_cli_predict_takes_the_transport_from_config_or_an_explicit_opt_in(local_dir_service, model_files, tmp_path):
    service, config, _ = local_dir_service
    _, model, X = model_files["diabetes"]
    np.save(tmp_path / "rows.npy", X[:2])
    runner = CliRunner()
    with serve(real_service(service)) as server:
        args = ["predict", "--endpoint", server.uri, "--model", "m", "--input", str(tmp_path / "rows.npy"), "--json"]
        refused = runner.invoke(cli, args)
        assert refused.exit_code == 1 and "--config" in refused.output and "'local-dir'" in refused.output
        for extra in (["--config", str(config)], ["--trust-service-transport"]):
            result = runner.invoke(cli, [*args, *extra])
            assert result.exit_code == 0, result.output
            np.testing.assert_allclose(json.loads(result.stdout)["predictions"], model.predict(X[:2]), atol=1e-3)
        both = runner.invoke(cli, [*args, "--config", str(config), "--trust-service-transport"])
        assert both.exit_code == 2 and "exclude each other" in both.output


# -- tokens: never over plain http beyond this machine ---------------------------------------------


@pytest.mark.parametrize(
    "uri, headers",
    [
        (f"http://{TEST_NET}/score", {"Authorization": f"Bearer {TOKEN}"}),
        (f"http://{TEST_NET}:8080/score", {"X-Service-Key": TOKEN}),
        (f"http://127.0.0.1:1@{TEST_NET}/score", {"Authorization": f"Bearer {TOKEN}"}),
        (f"http://user:{TOKEN}@{TEST_NET}/score", {}),
        ("http://scoring.example.net/score", {"Authorization": f"Bearer {TOKEN}"}),
    ],
)
def test_headers_are_never_sent_over_plain_http_beyond_loopback(no_network, uri, headers):
    with pytest.raises(SeiError) as caught:
        Client(Endpoint(uri, headers), retries=0).call({"op": "describe"})
    assert caught.value.code == "insecure_http", caught.value
    assert "allow_insecure_http" in caught.value.message and TOKEN not in caught.value.message
    assert no_network == []  # refused before any connection


def test_a_replaced_endpoint_is_checked_too(no_network):
    client = Client("http://127.0.0.1:9/score", retries=0)
    client.endpoint = Endpoint(f"http://{TEST_NET}/score", {"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(SeiError, match="plain http"):
        client.call({"op": "describe"})
    assert no_network == []


def test_https_and_an_explicit_allowance_may_send_the_token(no_network):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for client in (
        Client(Endpoint(f"https://{TEST_NET}/score", headers), retries=0),
        Client(Endpoint(f"http://{TEST_NET}/score", headers), retries=0, allow_insecure_http=True),
        Client(f"http://{TEST_NET}/score", retries=0),  # no credential to protect
    ):
        with pytest.raises(ServiceError) as caught:
            client.call({"op": "describe"})
        assert caught.value.code == "unreachable"  # it was sent (to the test's fake network)
    assert [r.headers.get("Authorization") for r in no_network] == [f"Bearer {TOKEN}"] * 2 + [None]


def test_loopback_http_is_fine(tmp_path):
    with serve(describing({"name": "inline", "options": {}})) as server:
        for host in ("127.0.0.1", "localhost"):
            uri = server.uri.replace("127.0.0.1", host)
            assert Client(Endpoint(uri, {"Authorization": f"Bearer {TOKEN}"})).describe()["service"] == "evil"
    assert [r.headers.get("Authorization") for r in server.requests] == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
        ("LOCALHOST", True), ("::ffff:127.0.0.1", True), ("localhost.", False), ("localhost.example.com", False),
        ("128.0.0.1", False), (TEST_NET, False), ("0.0.0.0", False), ("::", False), ("", False), (None, False),
    ],
)  # fmt: skip
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback_host(host) is loopback


def test_cli_refuses_a_token_over_plain_http_unless_allowed(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("SEI_TEST_TOKEN", TOKEN)
    np.save(tmp_path / "rows.npy", np.zeros((1, 10)))
    args = ["predict", "--endpoint", f"http://{TEST_NET}/score", "--model", "m", "--input", str(tmp_path / "rows.npy")]
    result = CliRunner().invoke(cli, [*args, "--token-env", "SEI_TEST_TOKEN"])
    assert result.exit_code == 1 and "--allow-insecure-http" in result.output and TOKEN not in result.output
    assert no_network == []
    result = CliRunner().invoke(cli, [*args, "--token-env", "SEI_TEST_TOKEN", "--allow-insecure-http"])
    assert result.exit_code == 1 and ("cannot reach" in result.output or "nothing answers" in result.output)
    assert len(no_network) >= 1


def test_redirects_are_not_followed(tmp_path):
    with serve(lambda request: (200, {"stolen": True}, {})) as elsewhere:
        target = elsewhere.uri.replace("/score", "/steal")
        with serve(lambda request: (307, {}, {"Location": target})) as server:
            headers = {"Authorization": f"Bearer {TOKEN}", "X-Service-Key": TOKEN}
            with pytest.raises(ServiceError) as caught:
                Client(Endpoint(server.uri, headers), retries=0).call({"op": "describe"})
    assert (caught.value.code, caught.value.status) == ("redirect", 307)
    assert len(server.requests) == 1 and elsewhere.requests == []
    assert TOKEN not in caught.value.message
