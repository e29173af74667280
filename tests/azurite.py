"""Azurite (the Azure Storage emulator) for the tests, and a guard that keeps tests off the network.

`make test` installs Azurite with `npm ci` into tools/azurite and sets SEI_NO_SKIPS=1, so there a
missing Azurite fails the tests instead of skipping them (tests/no_skips.py). Import the fixtures into
a test module: `from azurite import azurite_fixture, loopback_only_fixture  # noqa: F401`
(the fixtures are named `azurite` and `loopback_only`).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account: public constants, documented by Microsoft, not secrets.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Azurite:
    port: int
    location: Path

    @property
    def account_url(self) -> str:
        return f"http://{HOST}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )


def azurite_command() -> list[str] | None:
    """How to start azurite-blob: $SEI_AZURITE_BLOB, tools/azurite (make test), or PATH."""
    if shutil.which("node") is None:
        return None
    for candidate in (os.environ.get("SEI_AZURITE_BLOB"), str(AZURITE_BIN), shutil.which("azurite-blob")):
        if candidate and Path(candidate).is_file():
            return [candidate]
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module", name="azurite")
def azurite_fixture(tmp_path_factory):
    """Azurite's blob service on 127.0.0.1 and a free port, in a temporary folder; stopped afterwards."""
    command = azurite_command()
    if command is None:
        pytest.skip("Azurite is not installed (node and tools/azurite/node_modules: run `make azurite`)")
    location = tmp_path_factory.mktemp("azurite")
    port = _free_port()
    log = open(location / "azurite.log", "wb")
    process = subprocess.Popen(
        [
            *command,
            "--blobHost", HOST, "--blobPort", str(port), "--location", str(location),
            "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = Azurite(port, location)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("Azurite exited:\n" + (location / "azurite.log").read_text(errors="replace"))
            try:
                requests.get(server.account_url + "?comp=list", timeout=2)  # any HTTP answer means it is up
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not answer within 60 s") from None
                time.sleep(0.2)
        yield server
    finally:
        _stop(process)
        log.close()


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host in ("localhost", "", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(name="loopback_only")
def loopback_only_fixture(monkeypatch):
    """Any connection or name lookup beyond 127.0.0.0/8 and ::1 fails the test that made it."""
    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if not _loopback(host):
            attempts.append(f"connect {host}")
            raise OSError(f"test guard: no network beyond loopback (tried {host})")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _loopback(name):
            attempts.append(f"resolve {name}")
            raise socket.gaierror(f"test guard: no name lookups beyond loopback (tried {name})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], f"the code under test tried to reach the network: {attempts}"
