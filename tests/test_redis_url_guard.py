"""An Azure deployment's environment is kept in clear: a Redis URL carrying credentials anywhere redis-py
reads them (user info or query string) is refused, naming the part and never its value."""

from __future__ import annotations

import types

import pytest
from redis.connection import parse_url
from sei_azureml_common import service_environment, url_credentials

from sei_framework import DeployError

SECRET = "redis-access-key-value"
BUILD = types.SimpleNamespace(name="svc", manifest={"state": {"backend": "redis", "url_env": "SEI_TEST_REDIS_URL"}})


@pytest.mark.parametrize(
    ("url", "part"),
    [
        (f"rediss://:{SECRET}@host:6380/0", "password"),
        (f"rediss://host:6380/0?password={SECRET}", "query parameter 'password'"),
        (f"rediss://host:6380/0?ssl_cert_reqs=required&password={SECRET}", "query parameter 'password'"),
        (f"rediss://host:6380/0?pass%77ord={SECRET}", "query parameter 'password'"),  # decoded as redis-py does
        (f"unix:///run/redis.sock?db=0&password={SECRET}", "query parameter 'password'"),
        (f"rediss://host:6380/0?username=default&password={SECRET}", "query parameter 'username'"),
    ],
)
def test_a_password_anywhere_in_the_url_is_refused(url: str, part: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SECRET in (parse_url(url).get("password") or "")  # redis-py would log in with it
    monkeypatch.setenv("SEI_TEST_REDIS_URL", url)
    with pytest.raises(DeployError, match="carries credentials") as info:
        service_environment(BUILD, dry_run=False, target="azureml-online")
    assert part in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", ["rediss://host:6380/0", "rediss://host:6380/0?ssl_cert_reqs=required&db=2"])
def test_a_url_without_credentials_is_passed_on(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert url_credentials(url) == []
    monkeypatch.setenv("SEI_TEST_REDIS_URL", url)
    assert service_environment(BUILD, dry_run=False) == {"SEI_TEST_REDIS_URL": url}
