"""Per-key request quota (in process) and bearer-token auth of the local target (end to end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from conftest import keyed_request

from sei_framework import Client, DeployError
from sei_framework.cli import cli
from sei_framework.keys import Keyring
from sei_framework.serving import ScoringService
from sei_framework.state import QuotaExceeded
from sei_framework.state.memory import RequestQuota


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quota_counts_per_key_and_resets_with_the_window():
    clock = FakeClock()
    quota = RequestQuota(2, 60.0, clock=clock)
    a, b = "a" * 32, "b" * 32
    quota.charge(a)
    quota.charge(a)
    quota.charge(b)  # another key has its own count
    with pytest.raises(QuotaExceeded, match=f"key id {a} made 2 predict requests in this 60 s window") as info:
        quota.charge(a)
    assert info.value.code == "quota_exceeded" and info.value.status == 429
    clock.now += 60
    quota.charge(a)  # a new window
    quota.charge(a)
    with pytest.raises(QuotaExceeded):
        quota.charge(a)


def test_quota_forgets_keys_whose_window_ended():
    clock = FakeClock()
    quota = RequestQuota(5, 10.0, clock=clock)
    for i in range(50):
        quota.charge(f"{i:0>32}")
    assert len(quota) == 50
    clock.now += 11
    quota.charge("c" * 32)
    assert len(quota) == 1


def test_no_quota_means_no_counting():
    quota = RequestQuota(None, 1.0)
    for _ in range(100):
        quota.charge("a" * 32)
    assert len(quota) == 0


def test_service_refuses_a_key_over_its_quota_with_429(make_deployment, model_files, tmp_path):
    build = make_deployment(models=("diabetes",), limits={"max_requests_per_key": 2, "quota_window_s": 600}).build(
        tmp_path / "build"
    )
    service = ScoringService.from_build(build.path)
    description, status = service.handle(json.dumps({"op": "describe"}))
    assert status == 200 and description["limits"]["max_requests_per_key"] == 2
    _, model, X = model_files["diabetes"]
    client, body, publish, _ = keyed_request(service, "diabetes", X[:1])
    first = {**body, **publish}
    for request in (first, body):
        answer, status = service.handle(json.dumps(request))
        assert status == 200, answer
        np.testing.assert_allclose(client.decrypt(answer["result"], 1)[:, 0], model.predict(X[:1]), atol=1e-3)
    answer, status = service.handle(json.dumps(body))
    assert status == 429 and answer["error"]["code"] == "quota_exceeded", answer
    assert "made 2 predict requests in this 600 s window" in answer["error"]["message"]
    other, status = service.handle(json.dumps({**body, "key_id": "z" * 32}))
    assert status == 404 and other["error"]["code"] == "unknown_key_id"  # unknown keys are not charged
    service.keys.clear()  # the keys evicted: a spent key must not cost a fetch
    transport, service.transport = service.transport, None  # using it would be an internal error, not a 429
    answer, status = service.handle(json.dumps(first))
    assert status == 429 and answer["error"]["code"] == "quota_exceeded", answer
    service.transport = transport
    assert service.handle(json.dumps({"op": "describe"}))[1] == 200  # describe is never charged


TOKEN = "sei-test-token-9f4c1d0be7a2"


def test_auth_deploy_fails_without_the_token_variable(make_deployment, tmp_path, monkeypatch):
    monkeypatch.delenv("SEI_TEST_TOKEN", raising=False)
    target = {"target": "local", "options": {"state_dir": str(tmp_path / "state"), "auth": True, "token_env": "SEI_TEST_TOKEN"}}
    deployment = make_deployment(models=("diabetes",), target=target, name="auth-missing")
    with pytest.raises(DeployError, match="auth is on but the environment variable SEI_TEST_TOKEN is not set"):
        deployment.deploy(tmp_path / "build")


def test_auth_requires_the_bearer_token(make_deployment, model_files, tmp_path, monkeypatch):
    monkeypatch.setenv("SEI_TEST_TOKEN", TOKEN)
    target = {"target": "local", "options": {"state_dir": str(tmp_path / "state"), "auth": True, "token_env": "SEI_TEST_TOKEN"}}
    deployment = make_deployment(models=("diabetes",), target=target, name="auth-svc")
    endpoint = deployment.deploy(tmp_path / "build")
    try:
        assert endpoint.headers == {"Authorization": f"Bearer {TOKEN}"}
        assert TOKEN not in repr(endpoint)
        assert deployment.resolved.target_instance().endpoint("auth-svc").headers == endpoint.headers
        health = endpoint.scoring_uri.replace("/score", "/")
        assert requests.get(health, timeout=5).status_code == 200  # health stays open
        describe = json.dumps({"op": "describe"})
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic eDp5"}):
            response = requests.post(endpoint.scoring_uri, data=describe, headers=headers, timeout=30)
            assert response.status_code == 401, (headers.keys(), response.status_code)
            assert response.json() == {
                "error": {"code": "unauthorized", "message": "missing or wrong Authorization bearer token"}
            }
        assert requests.get(endpoint.scoring_uri, timeout=30).status_code == 401
        _, model, X = model_files["diabetes"]
        result = Client(endpoint, keyring=Keyring(tmp_path / "keys")).predict("diabetes", X[:2])
        np.testing.assert_allclose(result.predictions, model.predict(X[:2]), atol=1e-3)
        np.save(tmp_path / "rows.npy", X[:2])  # the CLI takes the token from the environment
        args = ["predict", "--endpoint", endpoint.scoring_uri, "--model", "diabetes", "--input", str(tmp_path / "rows.npy")]
        result = CliRunner().invoke(cli, [*args, "--token-env", "SEI_TEST_TOKEN", "--json"])
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(json.loads(result.stdout)["predictions"], model.predict(X[:2]), atol=1e-3)
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "401 unauthorized" in result.output and TOKEN not in result.output
        result = CliRunner().invoke(cli, [*args, "--token-env", "SEI_UNSET_TOKEN"])
        assert result.exit_code == 3 and "SEI_UNSET_TOKEN: the environment variable is not set" in result.output
        state = json.loads((tmp_path / "state" / "auth-svc" / "state.json").read_text())
        assert TOKEN not in json.dumps(state)
        log = (tmp_path / "state" / "auth-svc" / "server.log").read_text(errors="replace")
        assert '"POST /score HTTP/1.1" 401' in log and '"POST /score HTTP/1.1" 200' in log  # the right log
        assert TOKEN not in log
        assert TOKEN not in (tmp_path / "state" / "auth-svc" / "gunicorn.conf.py").read_text()
    finally:
        deployment.delete()



def test_service_refuses_oversized_requests_and_keys(make_deployment, model_files, tmp_path):
    """max_request_mb bounds a body before it is parsed; max_public_key_mb the keys before they are used."""
    limits = {"max_request_mb": 16, "max_public_key_mb": 4}  # EIServer's public keys are ~9 MB
    build = make_deployment(models=("diabetes",), limits=limits).build(tmp_path / "build")
    service = ScoringService.from_build(build.path)
    _, body, publish, public = keyed_request(service, "diabetes", model_files["diabetes"][2][:1])

    answer, status = service.handle(json.dumps({**body, "padding": "x" * (16 * 2**20)}))
    assert (status, answer["error"]["code"]) == (400, "request_too_large"), answer
    assert f"at most {16 * 2**20}" in answer["error"]["message"]

    answer, status = service.handle(json.dumps({**body, **publish}))
    assert (status, answer["error"]["code"]) == (400, "keys_too_large"), answer
    assert f"public keys are {len(public)} bytes; this service accepts at most {4 * 2**20}" in answer["error"]["message"]
    assert len(service.keys) == 0  # nothing of the refused keys was kept
    assert service.handle(json.dumps({"op": "describe"}))[1] == 200
