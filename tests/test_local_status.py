"""The local target's `host` option, `port: 0` kept across redeploys, and `sei status` (real azmlinfsrv)."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from sei_framework import Client, ConfigError
from sei_framework.cli import cli


def local(tmp_path, **options) -> dict:
    return {"target": "local", "options": {"state_dir": str(tmp_path / "state"), **options}}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.7"])
def test_a_host_beyond_loopback_needs_auth(make_deployment, tmp_path, host):
    deployment = make_deployment(models=("diabetes",), target=local(tmp_path, host=host))
    with pytest.raises(ConfigError) as raised:
        deployment.validate()
    assert f"host {host} is reachable from other machines: set auth: true" in raised.value.message
    assert "deploy.options" in raised.value.message
    with_auth = make_deployment(models=("diabetes",), target=local(tmp_path, host=host, auth=True), name="authed")
    assert with_auth.validate().target_options.host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_a_loopback_host_needs_no_auth(make_deployment, tmp_path, host):
    assert make_deployment(models=("diabetes",), target=local(tmp_path, host=host)).validate().target_options.host == host


@pytest.mark.parametrize("host", ["localhost", "my-laptop", "0.0.0.0:8890", ""])
def test_a_host_must_be_an_ip_address(make_deployment, tmp_path, host):
    deployment = make_deployment(models=("diabetes",), target=local(tmp_path, host=host, auth=True))
    with pytest.raises(ConfigError, match="is not an IP address; give 127.0.0.1"):
        deployment.validate()


def status(config: str) -> dict:
    result = CliRunner().invoke(cli, ["status", config, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_and_port_zero_kept_across_redeploys(make_deployment, tmp_path):
    deployment = make_deployment(models=("diabetes",), name="kept")
    config = str(tmp_path / "kept.yaml")
    assert status(config) == {"name": "kept", "target": "local", "state": "not deployed"}
    runner = CliRunner()
    result = runner.invoke(cli, ["deploy", config])
    assert result.exit_code == 0, result.output
    first = result.output.strip().splitlines()[-1]
    try:
        shown = status(config)
        port = first.split(":")[2].split("/")[0]
        log = str(tmp_path / "state" / "kept" / "server.log")
        assert shown["state"] == "running" and shown["scoring_uri"] == first and shown["port"] == port
        assert shown["host"] == "127.0.0.1" and shown["log"] == log and shown["health"] == "answering"
        assert shown["pid"].endswith("(alive)")
        lines = runner.invoke(cli, ["status", config]).output.splitlines()
        assert f"scoring_uri: {first}" in lines and f"log: {log}" in lines and "state: running" in lines
        assert deployment.deploy(tmp_path / "again").scoring_uri == first  # redeployed: the same port
        assert set(Client(first).describe()["models"]) == {"diabetes"}
    finally:
        assert deployment.delete() is True
    assert status(config) == {
        "name": "kept", "target": "local", "state": "not deployed", "log": log, "last_port": port,
    }  # fmt: skip
    assert deployment.deploy(tmp_path / "third").scoring_uri == first  # deleted, then deployed again
    try:
        pid = int(status(config)["pid"].split()[0])
    finally:
        deployment.delete()
    assert pid > 0


def test_port_zero_moves_when_the_last_port_is_taken(make_deployment, tmp_path):
    import socket

    deployment = make_deployment(models=("diabetes",), name="moved")
    first = deployment.deploy(tmp_path / "build").scoring_uri
    deployment.delete()
    port = int(first.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        second = deployment.deploy(tmp_path / "build").scoring_uri
        try:
            assert second != first and requests.get(second.replace("/score", "/"), timeout=5).status_code == 200
        finally:
            deployment.delete()


def test_status_of_a_server_that_died(make_deployment, tmp_path):
    import os
    import signal
    import time

    deployment = make_deployment(models=("diabetes",), name="died")
    deployment.deploy(tmp_path / "build")
    pid = int(status(str(tmp_path / "died.yaml"))["pid"].split()[0])
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while status(str(tmp_path / "died.yaml"))["state"] != "stopped" and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    shown = status(str(tmp_path / "died.yaml"))
    assert shown["state"] == "stopped" and shown["pid"] == f"{pid} (not alive)" and "scoring_uri" not in shown
    assert deployment.delete() is False


def test_status_of_a_target_that_keeps_no_state(tmp_path):
    from sei_framework import DeployTarget

    class Bare(DeployTarget):
        name = "bare"

        def deploy(self, build):  # pragma: no cover - never called
            raise NotImplementedError

        def delete(self, name: str) -> bool:  # pragma: no cover - never called
            return False

    shown = Bare(Bare.Options()).status("svc")
    assert shown.state == "unknown" and shown.scoring_uri is None
    assert shown.details == {"note": "deploy target 'bare' reports no status"}
