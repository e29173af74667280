"""The client side of the tree engine: keys, seeded symmetric encryption of split bits, checked decryption.

The client keeps the secret key. It publishes only relinearization keys (no Galois keys: nothing rotates), named
by a content hash. Each split's bits are encrypted with the secret key at the split's level: SEAL encrypts
(c0', c1') at the top level; the residues under the level's primes form a valid ciphertext there, and it is moved
onto a uniform ``a`` expanded from a fresh 32-byte seed: ``c0 = c0' + (c1' - a) * s``, so only the seed and c0
travel (packed to each prime's bit length).
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np
import seal

from . import wire
from .seal_context import CT_HEADER, context_for, expand_a
from .seal_plan import ClientPlan

__all__ = ["TreeClient"]


class TreeClient:
    """Encrypts split bits for one plan and decrypts its responses; holds the secret key."""

    def __init__(self, plan: ClientPlan, secret_key: bytes | None = None):
        self.plan = plan
        self.c = context_for(plan.params)
        ctx = self.c.ctx
        if secret_key is None:
            kg = seal.KeyGenerator(ctx)
        else:
            try:
                kg = seal.KeyGenerator(ctx, ctx.from_secret_str(secret_key))
            except (ValueError, RuntimeError, TypeError) as e:
                raise wire.TreesInputError("secret key does not load for these parameters") from e
        self._kg = kg
        self._sk = kg.secret_key()
        self._relin: bytes | None = None
        self._encryptor = seal.Encryptor(ctx, self._sk)
        self._decryptor = seal.Decryptor(ctx, self._sk)
        sk_res = np.frombuffer(self._sk.to_string(), dtype=np.uint64, offset=88)
        sk_res = sk_res.reshape(-1, self.c.n)
        self._sk_plain = {k: self.c.ntt_plain(sk_res[:k]) for k in set(plan.split_levels)}

    # -- keys --------------------------------------------------------------
    def secret_key(self) -> bytes:
        """The secret key's SEAL serialisation: store it like a password; it never leaves the client."""
        return bytes(self._sk.to_string())

    def relin_keys(self) -> bytes:
        """Relinearization keys (SEAL serialisation), the only evaluation keys the server needs."""
        if self._relin is None:
            self._relin = bytes(self._kg.create_relin_keys().to_string())
        return self._relin

    def key_id(self) -> str:
        """Content hash of the relinearization keys."""
        return hashlib.sha256(self.relin_keys()).hexdigest()

    # -- encrypt -----------------------------------------------------------
    def encrypt(self, bits: np.ndarray) -> bytes:
        """bits: (n_splits, n_rows) of 0/1, row r's bit for split s at [s, r] (1 = the row goes right)."""
        bits = np.asarray(bits)
        p = self.plan.params
        if bits.ndim != 2 or bits.shape[0] != self.plan.n_splits:
            raise ValueError(f"bits must be ({self.plan.n_splits}, n_rows), got {bits.shape}")
        n_rows = bits.shape[1]
        if not 1 <= n_rows <= p.rows:
            raise ValueError(f"a request carries 1..{p.rows} rows, got {n_rows}")
        if not np.isin(bits, (0, 1)).all():
            raise ValueError("bits must be 0 or 1")
        out = [wire.pack_header(wire.KIND_REQUEST, self.plan, n_rows, self.plan.n_splits)]
        slots = np.zeros(p.rows, dtype=np.int64)
        for s, k in enumerate(self.plan.split_levels):
            slots[:n_rows] = bits[s]
            seed, c0 = self._encrypt_row(slots, k)
            out.append(seed)
            out.append(wire.pack_residues(c0, self.c.primes[:k]))
        return b"".join(out)

    def _encrypt_row(self, slots: np.ndarray, k: int) -> tuple[bytes, np.ndarray]:
        c = self.c
        ct = self._encryptor.encrypt_symmetric(c.encoder.encode(slots))
        res = c.residues(ct)
        q = np.array(c.primes[:k], dtype=np.uint64)[:, None]
        seed = os.urandom(wire.SEED_BYTES)
        a = expand_a(seed, c.primes[:k], c.n)
        d = (res[1, :k] + q - a) % q
        ds = c.residues(c.evaluator.multiply_plain(c.ct_from_residues(d, d), self._sk_plain[k]))[0]
        return seed, (res[0, :k] + ds) % q

    # -- decrypt -----------------------------------------------------------
    def decrypt(self, response: bytes, n_rows: int) -> np.ndarray:
        """(n_rows, n_outputs) raw sums of leaf values, within `ClientPlan.score_error_bound` of the exact sums.

        Every ciphertext's size, level (parms_id), NTT form and byte count is checked before decrypting.
        """
        p = self.plan.params
        got = wire.parse_header(response, wire.KIND_RESPONSE, self.plan, wire.response_size(self.plan), p.n_outputs)
        if got != n_rows:
            raise wire.TreesInputError(f"response states {got} rows, the request had {n_rows}")
        view = memoryview(response)
        off = wire.HEADER.size
        want = CT_HEADER + 2 * p.out_primes * p.rows * 8
        t = self.c.t
        out = np.empty((n_rows, p.n_outputs), dtype=np.float64)
        for o in range(p.n_outputs):
            (ln,) = struct.unpack_from("<I", view, off)
            off += 4
            raw = bytes(view[off:off + ln])
            off += ln
            if ln != want or raw[16:48] != self.c.parms_ids[p.out_primes]:
                raise wire.TreesInputError(f"response ciphertext {o} is not at the output level or not of size 2")
            size, n, nq = struct.unpack_from("<QQQ", raw, 49)
            if (size, n, nq, raw[48]) != (2, p.rows, p.out_primes, 1):
                raise wire.TreesInputError(f"response ciphertext {o} has an unexpected shape")
            ct = seal.Ciphertext()
            try:
                ct.load_bytes(self.c.ctx, raw)
            except (ValueError, RuntimeError) as e:
                raise wire.TreesInputError(f"response ciphertext {o} does not load: {e}") from e
            v = np.asarray(self.c.encoder.decode(self._decryptor.decrypt(ct)), dtype=np.int64)[:n_rows]
            v = np.where(v > t // 2, v - t, v)  # centred representative (decode may return [0, t))
            out[:, o] = v / p.leaf_scale
        return out

    def noise_budget(self, ct: seal.Ciphertext) -> int:
        """SEAL's measured invariant noise budget of a ciphertext (tests compare it with `bound`)."""
        return int(self._decryptor.invariant_noise_budget(ct))
