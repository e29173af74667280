"""The service's converted-key cache: only checked keys, sized by what they hold, O(1), and fair.

Bound (per worker): protected keys <= 3/4 of key_cache_mb, keys used once <= 1/4, no entry over
1/4 cached; sizes are measured on the converted objects (docs/security.md).
"""

from __future__ import annotations

import ctypes
import base64
import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import keyed_request

from sei_framework import key_id_for
from sei_framework.serving import ScoringService
from sei_framework.state import OPAQUE_FACTOR, PROBATION_SHARE, KeyCache, measure_keys

MB = 2**20


def test_new_keys_wait_in_probation_least_recently_used_out():
    cache = KeyCache(max_bytes=1200)  # probation 300, protected 900
    for slot in ("a", "b", "c"):
        assert cache.put(slot, object(), 0, size=100)
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("d", object(), 0, size=100)
    assert "b" not in cache and all(s in cache for s in ("a", "c", "d"))
    assert cache.probation_bytes == cache.total_bytes == 300 <= cache.probation_max


def test_an_entry_over_the_per_entry_cap_is_not_cached():
    cache = KeyCache(max_bytes=400)
    assert cache.max_entry_bytes == 400 * PROBATION_SHARE
    assert cache.put("big", object(), 0, size=101) is False
    assert len(cache) == 0 and cache.total_bytes == 0


def test_a_flood_of_new_key_ids_cannot_evict_keys_in_use():
    cache = KeyCache(max_bytes=1000)
    for slot in ("alice", "bob"):
        cache.put(slot, slot, 0, size=100)
        cache.used(slot)
        cache.used(slot)  # a second successful use: protected
        assert cache.is_protected(slot)
    for i in range(10_000):
        cache.put(f"flood{i}", i, 0, size=100)
        cache.used(f"flood{i}")
    assert cache.get("alice") == "alice" and cache.get("bob") == "bob"
    assert cache.total_bytes <= 1000 and cache.probation_bytes <= 250


def test_protected_places_go_to_keys_used_more_often_than_the_least_recent():
    cache = KeyCache(max_bytes=400)  # protected: 3 entries of 100
    for slot in ("a", "b", "c"):
        cache.put(slot, slot, 0, size=100)
        for _ in range(5):
            cache.used(slot)
    cache.put("x", "x", 0, size=100)
    cache.used("x")
    cache.used("x")  # two uses do not beat five
    assert not cache.is_protected("x") and all(cache.is_protected(s) for s in "abc")
    for _ in range(10):
        cache.used("x")  # used more often than the least recently used: takes its place
    assert cache.is_protected("x") and not cache.is_protected("a") and "a" in cache  # demoted, not dropped
    assert cache.protected_bytes <= cache.protected_max and cache.total_bytes <= 400


def test_bookkeeping_is_o1_each_entry_is_measured_once():
    calls = []

    def sizer(value, raw_size):
        calls.append(value)
        return 10

    cache = KeyCache(max_bytes=40_000, sizer=sizer)
    for i in range(20_000):
        cache.put(i, i, 0)
        cache.get(i)
        cache.used(i)
    assert len(calls) == 20_000  # never re-measured, never re-summed
    assert cache.total_bytes == 10 * len(cache) <= 40_000


@dataclass
class _NativeKeys:
    array: ctypes.Array
    size: int


def test_sizes_count_what_converted_keys_hold():
    assert measure_keys(np.zeros(1000, dtype=np.uint64), 10) >= 8000
    view = np.frombuffer(bytes(5000), dtype=np.uint8)[:10]
    assert measure_keys(view, 10) >= 5000  # a view keeps its whole base alive
    native = _NativeKeys((ctypes.c_byte * 70_000)(), 70_000)
    assert 70_000 <= measure_keys(native, 70_000) < 71_000  # EIServer's converted keys
    assert 9000 <= measure_keys(bytes(9000), 9000) < 9200
    seal = pytest.importorskip("seal")
    opaque = seal.EncryptionParameters(seal.scheme_type.bfv)  # a pybind11 object: cannot be seen into
    assert measure_keys({"k": opaque}, 1000) >= OPAQUE_FACTOR * 1000


@pytest.fixture
def packed_service(make_deployment, tmp_path):
    def make(**limits):
        deployment = make_deployment(models=("digits",), adapter="sklearn-packed", limits=limits or None)
        return ScoringService.from_build(deployment.build(tmp_path / "build").path)

    return make


def test_invalid_keys_are_checked_before_anything_is_cached(packed_service, model_files):
    service = packed_service()
    _, body, _, public = keyed_request(service, "digits", model_files["digits"][2][:1])
    for garbage in (bytes(200_000), public[:-4] + b"\xff\xff\xff\xff", public + b"x"):
        request = {**body, "key_id": key_id_for(garbage), "public_keys": base64.b64encode(garbage).decode()}
        answer, status = service.handle(json.dumps(request))
        assert status == 400 and answer["error"]["code"] == "invalid_keys", answer
    assert len(service.keys) == 0 and service.keys.total_bytes == 0  # nothing of them was kept


def test_a_flood_of_fresh_key_ids_does_not_evict_a_returning_client(packed_service, model_files):
    service = packed_service(key_cache_mb=1)  # room for a few converted packed keys (~200 KB each)
    X = model_files["digits"][2]
    client, body, publish, public = keyed_request(service, "digits", X[:1])
    for request in ({**body, **publish}, body):  # published once, used twice
        assert service.handle(json.dumps(request))[1] == 200
    expansion = service.adapters["digits"].key_expansion  # the packed adapter's: SEAL's 64-bit words
    assert expansion == 4 and service.keys.total_bytes >= expansion * len(public)  # sized as converted, not raw
    for _ in range(12):  # fresh key ids, each with valid keys, used once
        _, flood, flood_publish, _ = keyed_request(service, "digits", X[:1])
        assert service.handle(json.dumps({**flood, **flood_publish}))[1] == 200
        assert service.keys.total_bytes <= 1 * MB
    answer, status = service.handle(json.dumps(body))  # no keys sent: they must still be cached
    assert status == 200, answer
    np.testing.assert_array_equal(client.interpret(client.decrypt(answer["result"], 1)).predictions,
                                  model_files["digits"][1].predict(X[:1]))  # fmt: skip


MEASURE = """
import gc, json, sys
import psutil
from sei_framework.serving import ScoringService, key_size
from sei_framework.state import KeyCache

service = ScoringService.from_build(sys.argv[1])
adapter = service.adapters["digits"]
client = adapter.client(service.describe()["models"]["digits"])
publics = [client.generate_keys()[1] for _ in range(40)]
process = psutil.Process()
gc.collect()
before = process.memory_info().rss
if sys.argv[2] == "keep":  # 40 converted key sets kept: what they really take against what is counted
    converted = [adapter.load_public_keys(raw) for raw in publics]
    counted = sum(key_size(adapter, keys, len(raw)) for keys, raw in zip(converted, publics, strict=True))
else:  # a 2 MB cache fed 120 converted key sets
    cache = KeyCache(2 * 2**20)
    for i in range(120):
        raw = publics[i % 40]
        keys = adapter.load_public_keys(raw)
        cache.put(i, keys, len(raw), key_size(adapter, keys, len(raw)))
        cache.used(i)
        cache.used(i)
    counted = cache.total_bytes
gc.collect()
print(json.dumps({"grown": process.memory_info().rss - before, "counted": counted}))
"""


def measure(build, mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(build.path), mode], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_counted_sizes_cover_real_process_memory(make_deployment, tmp_path):
    """The cache's own estimate is checked against a fresh process's RSS, not against itself."""
    build = make_deployment(models=("digits",), adapter="sklearn-packed").build(tmp_path / "build")
    kept = measure(build, "keep")
    assert 0 < kept["grown"] <= kept["counted"], kept  # converted SEAL keys (~170 KB each): counted >= real
    cached = measure(build, "cache")
    assert cached["counted"] <= 2 * MB
    assert cached["grown"] <= 2 * MB + 2 * MB, cached  # uncached, 120 key sets would take ~20 MB


class _Opaque:
    """Converted keys the cache cannot see into, as a native extension's objects are."""

    __slots__ = ()


def test_the_adapter_says_how_much_native_keys_expand():
    """The core holds no backend's factor: an adapter's `key_expansion` sizes what it cannot measure;
    an adapter that says nothing is charged what the keys were made from."""
    from sei_framework import ModelAdapter
    from sei_framework.serving import key_size

    class Plain(ModelAdapter):  # a third-party adapter written before key_expansion existed
        name = "plain"
        prepare = describe = load_public_keys = predict = client = None  # type: ignore[assignment]

    class Expanding(Plain):
        key_expansion = 10.0

    Plain.__abstractmethods__ = Expanding.__abstractmethods__ = frozenset()
    plain, expanding = (cls(None, {}, None) for cls in (Plain, Expanding))
    assert 1000 <= key_size(plain, _Opaque(), 1000) < 2000
    assert key_size(expanding, _Opaque(), 1000) >= 10_000
    assert measure_keys(_Opaque(), 1000) < 2 * 1000
