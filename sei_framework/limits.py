"""Per-model rows per request that fit the model: from what its adapter reports, at build time.

A model's own `models[].limits.max_rows_per_request` wins, if its requests fit `max_request_mb`.
Otherwise a model whose adapter reports a `RequestSize` gets the config's `max_rows_per_request`,
raised to at least one natural batch (whole batches) and capped at what fits `max_request_mb`;
a model whose adapter reports nothing gets the config's value as it is. When even the smallest
request cannot fit, the build fails naming `limits.max_request_mb` and the value to set.
"""

from __future__ import annotations

import math

from .base import RequestSize
from .config import LimitsConfig
from .errors import BuildError
from .state.keycache import PROBATION_SHARE

__all__ = ["ENVELOPE_BYTES", "MB", "check_key_limits", "model_max_rows", "request_bytes"]

MB = 1024 * 1024
ENVELOPE_BYTES = 16 * 1024
"""A request's bytes besides `data` and the public keys: field names, model name, key id, and the
fields of key transports that send a reference instead of the keys (a SAS URL)."""


def request_bytes(size: RequestSize, rows: int) -> int:
    """The largest body of a request of `rows` rows (a fewer-row batch costs a whole batch), with the
    public keys that the first request may carry."""
    batches = max(1, math.ceil(rows / size.batch_rows))
    return ENVELOPE_BYTES + size.public_key_bytes + batches * size.batch_bytes


def _mb_to_set(nbytes: float) -> int:
    return max(1, math.ceil(nbytes / MB))


def model_max_rows(name: str, index: int, size: RequestSize | None, limits: LimitsConfig, own: int | None) -> int:
    """Rows one request to model `name` (models[index]) may hold; BuildError when none can fit."""
    if size is None:
        return own if own is not None else limits.max_rows_per_request
    if size.batch_rows < 1 or size.batch_bytes < 1 or size.public_key_bytes < 0:
        raise BuildError(f"model {name!r}: its adapter reports an impossible request size {size}")
    budget = int(limits.max_request_mb * MB)
    smallest = request_bytes(size, 1)
    what = "one row" if size.batch_rows == 1 else f"one batch of {size.batch_rows} rows"
    if smallest > budget:
        raise BuildError(
            f"model {name!r}: its smallest request ({what}) is {smallest / MB:.1f} MB, over limits.max_request_mb "
            f"({limits.max_request_mb:g}); set limits.max_request_mb to at least {_mb_to_set(smallest)}"
        )
    fits = size.batch_rows * ((budget - ENVELOPE_BYTES - size.public_key_bytes) // size.batch_bytes)
    if own is not None:
        if own > fits:
            need = request_bytes(size, own)
            raise BuildError(
                f"model {name!r}: models[{index}].limits.max_rows_per_request is {own}, whose requests are "
                f"{need / MB:.1f} MB, over limits.max_request_mb ({limits.max_request_mb:g}); set "
                f"models[{index}].limits.max_rows_per_request to at most {fits}, or limits.max_request_mb "
                f"to at least {_mb_to_set(need)}"
            )
        return own
    rows = max(limits.max_rows_per_request, size.batch_rows)
    rows -= rows % size.batch_rows  # whole batches: a part-filled one costs as much
    return min(rows, fits)


def check_key_limits(name: str, size: RequestSize | None, limits: LimitsConfig) -> None:
    """BuildError when one key set of model `name` is over `max_public_key_mb` as received, or, once
    converted, over what the key cache admits for one entry (its probation share of `key_cache_mb`):
    the service could never use, or never keep, a client's keys."""
    if size is None:
        return
    if size.key_bytes > limits.max_public_key_mb * MB:
        raise BuildError(
            f"model {name!r}: one client's public keys are {size.key_bytes / MB:.1f} MB as received, over "
            f"limits.max_public_key_mb ({limits.max_public_key_mb:g}); set limits.max_public_key_mb to at least "
            f"{_mb_to_set(size.key_bytes)}"
        )
    if size.key_memory_bytes > PROBATION_SHARE * limits.key_cache_mb * MB:
        raise BuildError(
            f"model {name!r}: one client's public keys hold {size.key_memory_bytes / MB:.1f} MB once converted, "
            f"over the {PROBATION_SHARE:.0%} of limits.key_cache_mb ({limits.key_cache_mb:g}) that one key set may "
            f"take; set limits.key_cache_mb to at least {_mb_to_set(size.key_memory_bytes / PROBATION_SHARE)}"
        )
