"""Strict base64 for request fields: binary data (ciphertexts, keys) travels in JSON as base64."""

from __future__ import annotations

import base64
import binascii

from .errors import InvalidRequest

__all__ = ["base64_size", "decode_base64"]


def base64_size(nbytes: int) -> int:
    """Characters of `nbytes` bytes in padded base64 (what a ciphertext or key costs in a JSON request)."""
    if nbytes < 0:
        raise ValueError(f"a byte count cannot be negative: {nbytes}")
    return 4 * -(-nbytes // 3)


def decode_base64(text: object, what: str, *, code: str = "invalid_ciphertext") -> bytes:
    """The bytes of a request's base64 string `text`; InvalidRequest (with `code`) naming `what` when it
    is not a string or not strict base64 (characters outside the alphabet are refused, not skipped)."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be a base64 string", code=code)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{what} is not valid base64", code=code) from None
