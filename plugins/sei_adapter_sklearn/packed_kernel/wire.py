"""Wire format: message headers, seeded expansion of `a`, residue checks and `KernelInputError`."""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from .params import Params

__all__ = ["KernelInputError", "public_key_size", "request_size"]

_MAGIC = b"SEIP"
_KIND_REQ_ROW, _KIND_REQ_BATCH, _KIND_RESP_ROW, _KIND_RESP_BATCH, _KIND_PUB, _KIND_SECRET = 1, 2, 3, 4, 5, 6
# Layout version of each message kind; stored keys of version 1 stay readable.
_VERSIONS = {_KIND_RESP_ROW: 2}  # 2: a row response carries c0 only at the model's outputs
# magic(4) version(1) kind(1) reserved(2) fingerprint(8) n_rows(u32) n_ct(u32)
_HDR = struct.Struct("<4sBBH8sII")
_SEED_BYTES = 32


class KernelInputError(ValueError):
    """Raised for any malformed / mismatching ciphertext or key input."""


def _expand_a(seed: bytes, q: np.ndarray, N: int) -> np.ndarray:
    """Uniform (L, N) residues from a 32-byte seed (SHAKE-256, rejection sampling)."""
    L = len(q)
    out = np.empty((L, N), dtype=np.uint64)
    for j in range(L):
        extra = 256
        ctr = 0
        while True:
            mask = np.uint32((1 << int(q[j]).bit_length()) - 1)
            words = np.frombuffer(hashlib.shake_256(b"SEI-a" + bytes([j, ctr]) + seed).digest(4 * (N + extra)),
                                  dtype="<u4") & mask
            ok = words[words < q[j]]
            if ok.size >= N:
                out[j] = ok[:N]
                break
            ctr += 1
            extra *= 4
    return out


def request_size(params: Params) -> int:
    """Bytes of one request message: a row (single mode) or a full batch of N rows (bulk: one
    ciphertext per feature); each ciphertext is a seed and c0's 31-bit residues as 4-byte words."""
    n_ct = params.n_features if params.mode == "bulk" else 1
    data_primes = len(params.coeff_modulus_bits) - 1
    return _HDR.size + n_ct * (_SEED_BYTES + 4 * data_primes * params.poly_modulus_degree)


def public_key_size(params: Params) -> int:
    """Bytes of the seeded public key: a seed and pk0's residues under every prime (the special one too)."""
    return _HDR.size + _SEED_BYTES + 4 * len(params.coeff_modulus_bits) * params.poly_modulus_degree


def _pack_header(kind: int, params: Params, n_rows: int, n_ct: int) -> bytes:
    return _HDR.pack(_MAGIC, _VERSIONS.get(kind, 1), kind, 0, params.fingerprint(), n_rows, n_ct)


def _parse_header(buf: bytes, kind: int, params: Params) -> tuple[int, int]:
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise KernelInputError("expected bytes")
    if len(buf) < _HDR.size:
        raise KernelInputError(f"input too short ({len(buf)} bytes)")
    magic, ver, k, _res, fp, n_rows, n_ct = _HDR.unpack_from(buf, 0)
    if magic != _MAGIC:
        raise KernelInputError("bad magic: not a SEI packed-kernel message")
    if k != kind:
        raise KernelInputError(f"wrong message kind {k}, expected {kind}")
    if ver != _VERSIONS.get(kind, 1):
        raise KernelInputError(f"unsupported message version {ver} (this side speaks {_VERSIONS.get(kind, 1)})")
    if fp != params.fingerprint():
        raise KernelInputError("parameter fingerprint mismatch (message made for other parameters)")
    return n_rows, n_ct


def _check_residues(arr: np.ndarray, q: np.ndarray, what: str) -> None:
    # arr (..., L, N) ; every residue must be < its prime
    if np.any(arr >= q.astype(arr.dtype)[:, None]):
        raise KernelInputError(f"{what}: residue out of range for the coefficient modulus")
