"""Wire format of the tree engine: bytes and a fixed binary header, every size and count checked before use.

Request: header, then per split in plan order a 32-byte seed (c1 is expanded from it) and c0's residues under the
split's level's primes, each packed to its prime's bit length. Response: header, then per output a SEAL ciphertext
(size 2, output level). Every message is bound to the plan by its fingerprint, so sizes are known in advance.
"""

from __future__ import annotations

import struct

import numpy as np

from .seal_plan import ClientPlan

__all__ = ["SEED_BYTES", "TreesInputError", "pack_residues", "parse_header", "relin_keys_size", "request_size",
           "response_size", "split_sizes", "unpack_residues"]

MAGIC = b"SEIT"
VERSION = 2  # 2: c1 expanded from its seed by AES-256-CTR (1: SHAKE-256)
KIND_REQUEST, KIND_RESPONSE = 1, 2
# magic(4) version(1) kind(1) reserved(2) plan fingerprint(8) n_rows(u32) n_ct(u32)
HEADER = struct.Struct("<4sBBH8sII")
SEED_BYTES = 32
CT_HEADER = 113


class TreesInputError(ValueError):
    """A malformed or mismatching message: wrong kind, plan, count, size, level, or out-of-range residues."""


def packed_bytes(primes: tuple[int, ...], n: int) -> int:
    return sum((q.bit_length() * n + 7) // 8 for q in primes)


def pack_residues(res: np.ndarray, primes: tuple[int, ...]) -> bytes:
    """(k, n) residues -> each row packed little-endian to its prime's bit length (padded to a byte per row)."""
    out = []
    for row, q in zip(res, primes, strict=True):
        b = q.bit_length()
        bits = np.unpackbits(np.ascontiguousarray(row, dtype="<u8").view(np.uint8).reshape(-1, 8), axis=1,
                             bitorder="little")[:, :b]
        out.append(np.packbits(bits.reshape(-1), bitorder="little").tobytes())
    return b"".join(out)


def unpack_residues(buf: memoryview, primes: tuple[int, ...], n: int, what: str,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `pack_residues` (into ``out`` if given); every residue must lie below its prime.

    Eight b-bit values fill exactly b bytes, so value i of every group of eight starts at the same bit offset
    i*b of its group: one strided (unaligned) 8-byte read per position i, shifted, plus the group's next byte
    where the value runs past those 8 bytes."""
    if n % 8:
        raise ValueError("n must be a multiple of 8")
    out = np.empty((len(primes), n), dtype=np.uint64) if out is None else out
    g = n // 8
    off = 0
    for j, q in enumerate(primes):
        b = q.bit_length()
        nb = b * g
        raw = np.zeros(nb + 16, dtype=np.uint8)
        raw[:nb] = np.frombuffer(buf[off:off + nb], dtype=np.uint8)
        row = out[j].reshape(g, 8)
        mask = np.uint64((1 << b) - 1)
        for i in range(8):
            byte, sh = (i * b) >> 3, (i * b) & 7
            col = np.ndarray((g,), dtype="<u8", buffer=raw.data, offset=byte, strides=(b,)) >> np.uint64(sh)
            if sh + b > 64:
                ninth = np.ndarray((g,), dtype=np.uint8, buffer=raw.data, offset=byte + 8, strides=(b,))
                col |= ninth.astype(np.uint64) << np.uint64(64 - sh)
            row[:, i] = col & mask
        if np.any(out[j] >= np.uint64(q)):
            raise TreesInputError(f"{what}: a residue is out of range for the coefficient modulus")
        off += nb
    return out


def request_size(plan: ClientPlan) -> int:
    """Exact bytes of a request (any number of rows: a request always carries whole ciphertexts)."""
    p = plan.params
    return HEADER.size + sum(SEED_BYTES + packed_bytes(p.data_primes[:k], p.rows) for k in plan.split_levels)


def split_sizes(plan: ClientPlan) -> tuple[int, ...]:
    """Bytes each split's ciphertext adds to a request (a seed and c0 at the split's level)."""
    p = plan.params
    return tuple(SEED_BYTES + packed_bytes(p.data_primes[:k], p.rows) for k in plan.split_levels)


def relin_keys_size(plan: ClientPlan) -> int:
    """Bytes of a client's relinearization keys for these parameters (SEAL's serialisation; made once to measure:
    the size depends only on the parameters)."""
    import seal

    from .seal_context import context_for

    return len(seal.KeyGenerator(context_for(plan.params).ctx).create_relin_keys().to_string())


def response_size(plan: ClientPlan) -> int:
    p = plan.params
    return HEADER.size + p.n_outputs * (4 + CT_HEADER + 2 * p.out_primes * p.rows * 8)


def pack_header(kind: int, plan: ClientPlan, n_rows: int, n_ct: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, 0, plan.fingerprint(), n_rows, n_ct)


def parse_header(buf: bytes | bytearray | memoryview, kind: int, plan: ClientPlan, expect_size: int,
                 expect_ct: int) -> int:
    """Check magic, version, kind, plan, size and count; return the number of rows."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise TreesInputError("expected bytes")
    if len(buf) < HEADER.size:
        raise TreesInputError(f"message too short ({len(buf)} bytes)")
    magic, ver, k, _res, fp, n_rows, n_ct = HEADER.unpack_from(buf, 0)
    what = "request" if kind == KIND_REQUEST else "response"
    if magic != MAGIC:
        raise TreesInputError(f"bad magic: not a SEI trees {what}")
    if ver != VERSION:
        raise TreesInputError(f"unsupported message version {ver} (this side speaks {VERSION})")
    if k != kind:
        raise TreesInputError(f"wrong message kind {k}, expected {kind} ({what})")
    if fp != plan.fingerprint():
        raise TreesInputError(f"{what} made for another model or parameters (plan fingerprint mismatch)")
    if not 1 <= n_rows <= plan.params.rows:
        raise TreesInputError(f"{what} states {n_rows} rows; 1..{plan.params.rows} allowed")
    if n_ct != expect_ct:
        raise TreesInputError(f"{what} carries {n_ct} ciphertexts, expected {expect_ct}")
    if len(buf) != expect_size:
        raise TreesInputError(f"{what} is {len(buf)} bytes, expected exactly {expect_size} (truncated or padded)")
    return int(n_rows)
