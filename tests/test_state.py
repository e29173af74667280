"""Service state: quota counts and published keys shared through a real Redis by every worker and
replica; the memory backend for one process; and what happens while Redis is away."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import yaml
from conftest import with_bounds

from sei_framework import ConfigError, Deployment, key_id_for
from sei_framework.state import QuotaExceeded, StateUnavailable, open_state
from sei_framework.state.redis_store import redact_url

LIMITS = {"key_cache_mb": 16, "max_requests_per_key": 5, "quota_window_s": 600}
KEY = "a" * 32


def redis_state(service="svc", limits=LIMITS, **options):
    return open_state({"backend": "redis", **options}, limits, service)


def test_memory_is_the_default_backend():
    state = open_state(None, LIMITS, "svc")
    assert state.backend == "memory" and state.describe() == {"backend": "memory"}
    for _ in range(5):
        state.charge_quota(KEY)
    with pytest.raises(QuotaExceeded):
        state.check_quota(KEY)
    assert state.shared_public_keys(KEY) is None


def test_memory_keeps_raw_keys_only_for_a_service_of_several_models():
    several, single = open_state(None, LIMITS, "svc", models=2), open_state(None, LIMITS, "svc")
    for state in (several, single):
        state.share_public_keys(KEY, b"k" * 100)
    assert several.shared_public_keys(KEY) == b"k" * 100 and several.keys.total_bytes >= 100  # within the budget
    assert single.shared_public_keys(KEY) is None and len(single.keys) == 0


def test_quota_is_exact_across_workers_under_concurrency(redis_url):
    workers = [redis_state() for _ in range(8)]  # eight processes' worth of connections
    start, passed, refused = threading.Barrier(32), [], []

    def attempt(i: int) -> None:
        state = workers[i % len(workers)]
        start.wait()
        for _ in range(3):
            try:
                state.check_quota(KEY)
                state.charge_quota(KEY)
                passed.append(i)
            except QuotaExceeded as exc:
                assert "made 5 predict requests in this 600 s window" in exc.message
                refused.append(i)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(attempt, range(32)))
    assert len(passed) == 5 and len(refused) == 91
    restarted = redis_state()  # a restart (or another replica) remembers the count
    with pytest.raises(QuotaExceeded, match=r"retry in \d+ s"):
        restarted.check_quota(KEY)
    restarted.charge_quota("b" * 32)  # other keys have their own count
    with pytest.raises(QuotaExceeded):
        redis_state(limits={**LIMITS, "quota_window_s": 0.2}).charge_quota(KEY)  # same window until it ends


def test_quota_window_ends(redis_url):
    state = redis_state(limits={**LIMITS, "max_requests_per_key": 2, "quota_window_s": 0.3})
    state.charge_quota(KEY)
    state.charge_quota(KEY)
    with pytest.raises(QuotaExceeded):
        state.charge_quota(KEY)
    time.sleep(0.4)
    state.charge_quota(KEY)


def test_published_keys_are_shared_within_a_namespace_only(redis_url):
    a, b, other = redis_state("svc-a", namespace="shared"), redis_state("svc-b", namespace="shared"), redis_state("x")
    raw = b"public keys" * 100
    a.share_public_keys(key_id_for(raw), raw)
    assert b.shared_public_keys(key_id_for(raw)) == raw
    assert other.shared_public_keys(key_id_for(raw)) is None
    assert b.describe() == {"backend": "redis", "shared": True}


def test_published_keys_expire(redis_url):
    import redis

    state = redis_state(public_key_ttl_s=60)
    state.share_public_keys(KEY, b"k")
    ttl = redis.Redis.from_url(redis_url).pttl(f"sei:svc:pub:{KEY}")
    assert 0 < ttl <= 60_000


def test_an_unreachable_redis_fails_closed_and_recovers(redis_server, redis_url):
    state = redis_state(timeout_s=0.5)
    state.charge_quota(KEY)
    state.share_public_keys(KEY, b"k")
    redis_server.stop()
    try:
        for call in (lambda: state.check_quota(KEY), lambda: state.charge_quota(KEY),
                     lambda: state.shared_public_keys(KEY), lambda: state.share_public_keys(KEY, b"k")):  # fmt: skip
            with pytest.raises(StateUnavailable) as info:
                call()
            assert (info.value.code, info.value.status) == ("state_unavailable", 503)
            assert "127.0.0.1" not in info.value.message
    finally:
        redis_server.start()
    state.charge_quota(KEY)  # the same client reconnects (Redis came back empty: no persistence here)
    assert state.shared_public_keys(KEY) is None


def test_the_url_comes_from_the_environment_and_is_never_logged(redis_server, monkeypatch, caplog):
    monkeypatch.delenv("SEI_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="the environment variable SEI_REDIS_URL is not set"):
        redis_state()
    secret_url = f"redis://user:s3cret-pass@127.0.0.1:{redis_server.port}/0"
    monkeypatch.setenv("SEI_TEST_REDIS", secret_url)
    assert redact_url(secret_url) == f"redis://***@127.0.0.1:{redis_server.port}/0"
    with caplog.at_level(logging.DEBUG):
        state = redis_state(url_env="SEI_TEST_REDIS")
        with pytest.raises(StateUnavailable):  # the server has no such user
            state.check_quota(KEY)
    assert "s3cret-pass" not in caplog.text and "***@127.0.0.1" in caplog.text
    assert "s3cret" not in json.dumps(state.describe())


def test_the_build_carries_the_state_section_and_its_requirement(make_deployment, tmp_path):
    build = make_deployment(models=("diabetes",), state={"backend": "redis", "namespace": "ns"}).build(tmp_path / "b")
    assert build.manifest["state"]["backend"] == "redis" and build.manifest["state"]["url_env"] == "SEI_REDIS_URL"
    assert "redis>=5" in build.requirements
    plain = make_deployment(models=("diabetes",), name="plain").build(tmp_path / "p")
    assert plain.manifest["state"]["backend"] == "memory" and not any(r.startswith("redis") for r in plain.requirements)


def test_state_config_is_validated(make_deployment):
    with pytest.raises(ConfigError) as info:
        make_deployment(models=("diabetes",), state={"backend": "memcached", "url": "redis://x"})
    problems = "\n".join(info.value.problems)
    assert "state.backend: Input should be 'memory' or 'redis'" in problems
    assert "state.url: Extra inputs are not permitted" in problems  # the URL itself is never config


def test_in_process_service_finds_keys_another_replica_published(make_deployment, model_files, tmp_path, redis_url):
    from conftest import keyed_request

    from sei_framework.serving import ScoringService

    state = {"backend": "redis", "namespace": "shared"}
    builds = [
        make_deployment(models=("digits",), adapter="sklearn-packed", limits=LIMITS, state=state, name=name)
        .build(tmp_path / name)
        for name in ("one", "two")
    ]
    one, two = (ScoringService.from_build(b.path) for b in builds)
    X = model_files["digits"][2][:1]
    client, body, publish, public = keyed_request(one, "digits", X)
    garbage = bytes(len(public))
    answer, status = one.handle(json.dumps({**body, "key_id": key_id_for(garbage), "public_keys": "AAAA" * 100}))
    assert status == 400
    assert one.state.shared_public_keys(key_id_for(garbage)) is None  # refused keys are never shared
    assert one.handle(json.dumps({**body, **publish}))[1] == 200
    answer, status = two.handle(json.dumps(body))  # no keys sent: found in Redis
    assert status == 200, answer
    np.testing.assert_array_equal(client.interpret(client.decrypt(answer["result"], 1)).predictions,
                                  model_files["digits"][1].predict(X))  # fmt: skip
    assert two.describe()["state"] == {"backend": "redis", "shared": True}


# -- end to end: azmlinfsrv with four workers and one Redis ---------------------------------------


def _deployment(tmp_path, model_files, name: str) -> Deployment:
    config = {
        "name": name,
        "models": [with_bounds({"name": "digits", "adapter": "sklearn-packed", "path": str(model_files["digits"][0])})],
        "deploy": {"target": "local", "options": {"state_dir": str(tmp_path / "state"), "workers": 4}},
        "limits": {"max_requests_per_key": 5, "quota_window_s": 600},
        "state": {"backend": "redis", "url_env": "SEI_REDIS_URL", "namespace": "e2e", "timeout_s": 1},
    }
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return Deployment.from_file(tmp_path / f"{name}.yaml")


def _post(uri: str, body: dict) -> tuple[int, dict]:
    response = requests.post(uri, data=json.dumps(body), timeout=60)  # a fresh connection each time
    return response.status_code, response.json()


def test_four_workers_share_one_quota_and_keys_across_restarts_and_outages(
    redis_server, redis_url, model_files, tmp_path
):
    from sei_adapter_sklearn.packed import PackedAdapter

    deployment = _deployment(tmp_path, model_files, "redis-e2e")
    endpoint = deployment.deploy(tmp_path / "build")
    try:
        uri = endpoint.scoring_uri
        status, description = _post(uri, {"op": "describe"})
        assert status == 200 and description["state"] == {"backend": "redis", "shared": True}
        X = model_files["digits"][2][:1]
        expected = model_files["digits"][1].predict(X)

        def new_client():
            client = PackedAdapter.client(description["models"]["digits"])
            secret, public = client.generate_keys()
            client.use_keys(secret, public)
            body = {"model": "digits", "key_id": key_id_for(public), "data": client.encrypt(X)}
            return client, body, {"public_keys": base64.b64encode(public).decode()}

        client, body, publish = new_client()
        status, answer = _post(uri, {**body, **publish})  # published once, to whichever worker answers
        assert status == 200, answer
        with ThreadPoolExecutor(4) as pool:  # then 15 more, concurrently, over fresh connections
            answers = list(pool.map(lambda _: _post(uri, body), range(15)))
        codes = sorted(s for s, _ in answers)
        assert codes == [200] * 4 + [429] * 11, answers  # exactly 5 in all, whichever workers answered
        assert all(a["error"]["code"] == "quota_exceeded" for s, a in answers if s == 429)
        for status, answer in answers:
            if status == 200:
                assert (client.interpret(client.decrypt(answer["result"], 1)).predictions == expected).all()

        second, second_body, second_publish = new_client()
        assert _post(uri, {**second_body, **second_publish})[0] == 200

        endpoint = deployment.deploy(tmp_path / "build")  # a restart: new processes, empty caches
        uri = endpoint.scoring_uri
        status, answer = _post(uri, body)
        assert status == 429 and answer["error"]["code"] == "quota_exceeded", answer  # the count survived
        for _ in range(4):
            status, answer = _post(uri, second_body)  # keys found in Redis by every worker: no republishing
            assert status == 200, answer
            assert (second.interpret(second.decrypt(answer["result"], 1)).predictions == expected).all()

        redis_server.stop()
        try:
            for _ in range(4):
                status, answer = _post(uri, second_body)
                assert status == 503 and answer["error"]["code"] == "state_unavailable", answer
            assert _post(uri, {"op": "describe"})[0] == 200  # the service stays up
        finally:
            redis_server.start()
        status, answer = _post(uri, {**second_body, **second_publish})  # this Redis keeps nothing over a restart
        assert status == 200, answer
        log = (tmp_path / "state" / "redis-e2e" / "server.log").read_text(errors="replace")
        assert "internal error while scoring" not in log and "s3cret" not in log
    finally:
        deployment.delete()
