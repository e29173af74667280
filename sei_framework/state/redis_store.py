"""State backend `redis`: quota counts and published public keys shared by every worker and
replica (Azure Cache for Redis in the cloud); the URL comes from an environment variable.

Keys, under `{prefix}:{namespace}:` (namespace: the deployment name unless configured):
`quota:{key_id}` a request counter that expires with its fixed window, and `pub:{cache key}` raw
public keys, stored only after they matched their key id and converted, expiring after
`public_key_ttl_s` without use. When Redis cannot be reached every call raises StateUnavailable
(HTTP 503): the quota fails closed, and the service serves again as soon as Redis answers.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, SeiError
from ..extras import install_hint
from . import KeyCache, QuotaExceeded, ServiceState, StateUnavailable, quota_message

__all__ = ["RedisState", "redact_url"]

log = logging.getLogger(__name__)

# Atomic gate: refuse a spent window, else count one request; the first count starts the window.
_CHARGE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then n = redis.call('INCR', KEYS[1]) else n = -n end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
return {n, ttl}
"""


def redact_url(url: str) -> str:
    """`url` without its user name and password, for logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"***@{host}" if parts.username or parts.password else host) + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unparsable redis url>"


class RedisState(ServiceState):
    """Quota counted in Redis (exactly N requests per window, whatever the number of workers);
    public keys published to one replica found by all; counts survive restarts."""

    backend: ClassVar[str] = "redis"

    def __init__(
        self,
        keys: KeyCache,
        max_requests: int | None,
        window_s: float,
        *,
        namespace: str,
        url_env: str = "SEI_REDIS_URL",
        prefix: str = "sei",
        public_key_ttl_s: float = 7 * 24 * 3600,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(keys, max_requests, window_s)
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise SeiError(
                "state backend 'redis' needs the `redis` extra of sei-framework (the redis package): "
                + install_hint("redis"),
                code="missing_dependency",
            ) from None
        url = os.environ.get(url_env, "")
        if not url:
            raise ConfigError(
                f"state backend 'redis': the environment variable {url_env} is not set; "
                "set it to the Redis URL (for example rediss://:<access key>@<name>.redis.cache.windows.net:6380/0)"
            )
        self._errors = (redis.RedisError, OSError)
        self.where = redact_url(url)
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),  # one immediate retry: a connection Redis closed when it restarted
            health_check_interval=30,
        )
        self._charge = self.client.register_script(_CHARGE)
        self.prefix = f"{prefix}:{namespace}:"
        self.window_ms = max(1, int(window_s * 1000))
        self.public_key_ttl_ms = max(1, int(public_key_ttl_s * 1000))
        log.info("SEI state: redis at %s, namespace %r", self.where, self.prefix)

    def _unavailable(self, exc: BaseException) -> StateUnavailable:
        log.warning("SEI state: redis at %s failed: %s: %s", self.where, type(exc).__name__, exc)
        return StateUnavailable("the service's shared state store is unavailable; retry shortly")

    def _quota_key(self, key_id: str) -> str:
        return f"{self.prefix}quota:{key_id}"

    def check_quota(self, key_id: str) -> None:
        if self.max_requests is None:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(self._quota_key(key_id))  # (redis-py's types do not follow a chained pipeline)
                pipe.pttl(self._quota_key(key_id))
                count, ttl = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from None
        count = int(count or 0)
        if count >= self.max_requests:
            raise QuotaExceeded(quota_message(key_id, count, self.window_s, max(ttl, 0) / 1000))

    def charge_quota(self, key_id: str) -> None:
        if self.max_requests is None:
            return
        try:
            count, ttl = self._charge(keys=[self._quota_key(key_id)], args=[self.max_requests, self.window_ms])
        except self._errors as exc:
            raise self._unavailable(exc) from None
        if count < 0:
            raise QuotaExceeded(quota_message(key_id, -count, self.window_s, max(ttl, 0) / 1000))

    def shared_public_keys(self, cache_key: str) -> bytes | None:
        key = f"{self.prefix}pub:{cache_key}"
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pexpire(key, self.public_key_ttl_ms)
                raw, _ = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return raw

    def share_public_keys(self, cache_key: str, raw: bytes) -> None:
        try:
            self.client.set(f"{self.prefix}pub:{cache_key}", raw, px=self.public_key_ttl_ms)
        except self._errors as exc:
            raise self._unavailable(exc) from None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "shared": True}

    def close(self) -> None:
        self.client.close()
