"""The service's public-key cache stays within its byte budget, least recently used out."""

from __future__ import annotations

from sei_framework.serving import KeyCache


def test_cache_evicts_least_recently_used_within_its_budget():
    cache = KeyCache(max_bytes=300)
    for key_id in ("a", "b", "c"):
        cache.put(key_id, bytes(100))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("d", bytes(100))
    assert cache.get("b") is None and all(cache.get(k) is not None for k in ("a", "c", "d"))
    assert cache.total_bytes <= 300


def test_converted_keys_count_against_the_budget_and_are_made_once():
    cache = KeyCache(max_bytes=250)
    calls = []
    entry = cache.put("a", bytes(100))
    first = cache.converted("a", entry, "model", lambda raw: calls.append(raw) or "converted")
    again = cache.converted("a", entry, "model", lambda raw: calls.append(raw) or "other")
    assert first == again == "converted" and len(calls) == 1
    cache.put("b", bytes(100))  # "a" with its conversion (200) + "b" (100) is over budget
    assert cache.get("a") is None and cache.get("b") is not None


def test_a_single_entry_larger_than_the_budget_is_still_served():
    cache = KeyCache(max_bytes=10)
    cache.put("big", bytes(100))
    assert cache.get("big") is not None and len(cache) == 1
