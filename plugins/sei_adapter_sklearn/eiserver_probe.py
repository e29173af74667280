"""Do EIServer public keys belong to a secret key? Asked in a fresh interpreter of its own.

The client asks this whenever it loads a key pair. The answer needs a native dot product with the
public keys, and damaged keys can abort native code, so it runs in another process. That process
must not be a fork: encrypted-inference calls its library through ctypes, which releases the GIL,
so other threads of the client may be inside the library, holding its locks, at the moment of a
fork, and the forked child then waits on them forever. A fresh interpreter starts without them.

Run as a script through `run_script_isolated`: the request is a frame holding the 64-byte secret
key and the public keys ({"secret": bytes, "public": bytes}); the answer, the probe's decrypted value
(a float), goes back as a frame too (sei_framework.framing: data only, never a pickle).
"""

from __future__ import annotations

import base64
import ctypes
from typing import Any

import numpy as np
from encrypted.inference.internal import einative

from sei_framework import InvalidRequest, serve_isolated

SECRET_BYTES = 64
# One feature, so one ciphertext: x * w + b must come back from the public keys' dot product.
PROBE_X, PROBE_W, PROBE_B = 0.75, 1.5, -0.25


class NativeError(RuntimeError):
    """The native library returned an error code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"native dot product failed with code {code & 0xFFFFFFFF:#x}")


def result_size(server: einative.SEALServerInstance, ciphertexts_per_row: int) -> int:
    """Bytes of one output's result buffer."""
    return server.get_ciphertext_buffer_size() * ciphertexts_per_row


def dot_product(
    server: einative.SEALServerInstance,
    weights: np.ndarray,
    intercept: float,
    ciphertexts: ctypes.Array,
    keys: ctypes.Array,
    size: int,
) -> bytes:
    """EIServer's native dot product of one encrypted row with one weight vector, as bytes."""
    out = (ctypes.c_byte * size)()
    out_size = ctypes.c_uint64(size)
    error = einative._einative.ComputeDotProduct(
        server.native_ptr,
        ctypes.c_uint64(len(weights)),
        weights.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        ctypes.c_double(intercept),
        ctypes.c_uint64(len(ciphertexts)),
        ciphertexts,
        ctypes.c_uint64(len(keys)),
        keys,
        ctypes.byref(out_size),
        out,
    )
    if error != 0:
        raise NativeError(error)
    return ctypes.string_at(out, out_size.value)


def probe_value(secret: bytes, public_keys: bytes) -> float:
    """Encrypt PROBE_X with the secret, score it with the public keys, decrypt: PROBE_X*PROBE_W+PROBE_B if they match."""
    from encrypted.inference.eiclient import EILinearRegressionClient

    client = EILinearRegressionClient(secret_key=base64.b64encode(secret).decode("ascii"), verbose=False)
    row = b"".join(base64.b64decode(text) for text in client.encrypt(np.array([PROBE_X])))
    server = einative.SEALServerInstance()
    result = dot_product(
        server,
        np.array([PROBE_W], dtype=np.float64),
        PROBE_B,
        (ctypes.c_byte * len(row)).from_buffer_copy(row),
        (ctypes.c_byte * len(public_keys)).from_buffer_copy(public_keys),
        result_size(server, 1),
    )
    return float(client.decrypt([base64.b64encode(result).decode("ascii")])[0])


def answer(request: Any) -> float:
    """The probe's value for a framed request {"secret": bytes, "public": bytes}."""
    if not isinstance(request, dict) or not all(isinstance(request.get(key), bytes) for key in ("secret", "public")):
        raise InvalidRequest("the probe takes {'secret': bytes, 'public': bytes}", code="invalid_keys")
    return probe_value(request["secret"], request["public"])


def main() -> None:
    serve_isolated(answer, once=True)


if __name__ == "__main__":
    main()
