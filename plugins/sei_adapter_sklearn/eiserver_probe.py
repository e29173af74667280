"""Do EIServer public keys belong to a secret key? Asked in a fresh interpreter of its own.

The client asks this whenever it loads a key pair. The answer needs a native dot product with the
public keys, and damaged keys can abort native code, so it runs in another process. That process
must not be a fork: encrypted-inference calls its library through ctypes, which releases the GIL,
so other threads of the client may be inside the library, holding its locks, at the moment of a
fork, and the forked child then waits on them forever. A fresh interpreter starts without them.

Run as a script: stdin holds the 64-byte secret key then the public keys; stdout gets the probe's
decrypted value as one float64. Imports only numpy and encrypted-inference, so it starts quickly.
"""

from __future__ import annotations

import base64
import ctypes
import struct
import sys

import numpy as np
from encrypted.inference.internal import einative

SECRET_BYTES = 64
# One feature, so one ciphertext: x * w + b must come back from the public keys' dot product.
PROBE_X, PROBE_W, PROBE_B = 0.75, 1.5, -0.25
_VALUE = struct.Struct("<d")


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


def main() -> None:
    payload = sys.stdin.buffer.read()
    value = probe_value(payload[:SECRET_BYTES], payload[SECRET_BYTES:])
    sys.stdout.buffer.write(_VALUE.pack(value))


def read_value(output: bytes) -> float:
    """The value main() wrote."""
    return _VALUE.unpack(output)[0]


if __name__ == "__main__":
    main()
