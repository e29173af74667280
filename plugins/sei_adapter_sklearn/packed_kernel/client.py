"""Client side: `ClientKeys` generates keys, encrypts requests and decrypts responses."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import numpy as np
import seal

from .params import Params
from .seal_context import _CT_DATA_OFF, _SK_DATA_OFF, _Ctx, _ctx_for, _expand_a_key, _mulmod
from .wire import (
    _HDR,
    _KIND_PUB,
    _KIND_REQ_BATCH,
    _KIND_REQ_ROW,
    _KIND_RESP_BATCH,
    _KIND_RESP_ROW,
    _KIND_SECRET,
    _SEED_BYTES,
    KernelInputError,
    _check_residues,
    _expand_a,
    _pack_header,
    _parse_header,
)

__all__ = ["ClientKeys"]

# A public key's error e is SEAL's noise (centered binomial or clipped normal, sigma 3.2): |e| <= 21.
# A public-key encryption of zero at the data level decrypts to at most a few thousand (rounding * s).
# Another secret key leaves residues uniform below primes of 2^30 or more, far above either bound.
_KEY_NOISE_BOUND = 64
_ZERO_NOISE_BOUND = 2**20


class ClientKeys:
    """Secret/public key pair and the client-side encode/encrypt/decrypt."""

    def __init__(self, params: Params, sk_bytes: bytes, pub: bytes):
        self.params = params
        self._c = _ctx_for(params)
        c = self._c
        self._sk = _load_secret_key(c, sk_bytes)
        self._sk_bytes = sk_bytes
        self._pub = pub
        Lk = len(c.qk)
        s_ntt = np.frombuffer(sk_bytes, dtype=np.uint64, offset=_SK_DATA_OFF).reshape(Lk, c.N)
        self._s_ntt = s_ntt[:c.L].copy()             # data level
        self._s_ntt_key = s_ntt.copy()
        s_coeff = c.from_ntt(np.stack([self._s_ntt, self._s_ntt]))[0, 0]   # (c1 must be non-zero)
        q0 = int(c.q[0])
        s = np.where(s_coeff == 0, 0, np.where(s_coeff == 1, 1, -1)).astype(np.int64)
        if not np.all((s_coeff == 0) | (s_coeff == 1) | (s_coeff == q0 - 1)):
            raise ValueError("secret key is not ternary")
        self._s = s
        self._enc = seal.Encryptor(c.ctx, self._sk)
        self._zero_pt = _zero_plaintext(c)
        self._dec_rows_cache: dict[tuple[int, ...], np.ndarray] = {}

    # -- construction ------------------------------------------------------
    @classmethod
    def generate(cls, params: Params) -> ClientKeys:
        c = _ctx_for(params)
        kg = seal.KeyGenerator(c.ctx)
        sk = kg.secret_key()
        pk = kg.create_public_key()
        skb = bytes(sk.to_string())
        pk_arr = np.frombuffer(pk.to_string(), dtype=np.uint64, offset=_CT_DATA_OFF).reshape(2, len(c.qk), c.N)
        # re-seed pk1 so that only (seed, pk0) is uploaded
        Lk = len(c.qk)
        s_key = np.frombuffer(skb, dtype=np.uint64, offset=_SK_DATA_OFF).reshape(Lk, c.N)
        seed = os.urandom(_SEED_BYTES)
        a2 = _expand_a_key(seed, c)
        diff = (pk_arr[1] + c.qk[:, None] - a2) % c.qk[:, None]
        pk0 = (pk_arr[0] + _mulmod(diff, s_key, c.qk)) % c.qk[:, None]
        pub = _pack_header(_KIND_PUB, params, 0, 1) + seed + pk0.astype("<u4").tobytes()
        return cls(params, skb, pub)


    def public_bytes(self) -> bytes:
        """Everything the server needs (compact, seeded public key)."""
        return self._pub

    def secret_bytes(self) -> bytes:
        """Serialize secret key + params for local storage (keep private!)."""
        pj = self.params.to_json().encode()
        return (_pack_header(_KIND_SECRET, self.params, 0, 0) + struct.pack("<III", len(pj), len(self._sk_bytes),
                len(self._pub)) + pj + self._sk_bytes + self._pub)

    @classmethod
    def from_secret_bytes(cls, blob: bytes) -> ClientKeys:
        try:
            n1, n2, n3 = struct.unpack_from("<III", blob, _HDR.size)
            off = _HDR.size + 12
            params = Params.from_json(blob[off:off + n1].decode())
            _parse_header(blob, _KIND_SECRET, params)
            skb = bytes(blob[off + n1: off + n1 + n2])
            pub = bytes(blob[off + n1 + n2: off + n1 + n2 + n3])
            if len(pub) != n3 or len(skb) != n2:
                raise KernelInputError("truncated secret blob")
        except KernelInputError:
            raise
        except Exception as e:
            raise KernelInputError(f"bad secret blob: {e}") from None
        return cls(params, skb, pub)

    # -- key-pair check ----------------------------------------------------
    def verify_public(self, pub: bytes) -> None:
        """Raise KernelInputError unless `pub` is the public key stored with this secret key and was made
        from it: pk0 + a*s must be SEAL's small noise e in every prime. A mismatched pair would make the
        service re-randomise with another key, and decrypt to wrong scores without an error."""
        c, p = self._c, self.params
        try:
            _parse_header(pub, _KIND_PUB, p)  # kind, layout version, parameter fingerprint
        except KernelInputError as exc:
            raise KernelInputError(f"public key: {exc}") from None
        if bytes(pub) != self._pub:
            raise KernelInputError("the public key is not the one stored with the secret key (another key id)")
        Lk = len(c.qk)
        if len(pub) != _HDR.size + _SEED_BYTES + 4 * Lk * c.N:
            raise KernelInputError("the public key has the wrong size for these parameters")
        seed = bytes(pub[_HDR.size:_HDR.size + _SEED_BYTES])
        pk0 = np.frombuffer(pub, dtype="<u4", offset=_HDR.size + _SEED_BYTES).reshape(Lk, c.N).astype(np.uint64)
        _check_residues(pk0, c.qk, "public key")
        a = _expand_a_key(seed, c)
        noise = (pk0 + _mulmod(a, self._s_ntt_key, c.qk)) % c.qk[:, None]      # NTT of e, every prime
        # data primes: SEAL's inverse NTT gives e's coefficients, one small integer in every prime
        e = c.from_ntt(np.stack([noise[:c.L], np.ones_like(noise[:c.L])]))[0].astype(np.int64)
        q = c.q.astype(np.int64)[:, None]
        e = np.where(e > q // 2, e - q, e)
        if np.abs(e).max() > _KEY_NOISE_BOUND or np.any(e != e[0]):
            raise KernelInputError("the public key was not made from this secret key")
        # the special prime (key level only): a public-key encryption of zero must decrypt to small noise,
        # which it cannot when pk's special-prime residues are not those of the same e
        pk = c.ctx.from_public_str(c._pk_tmpl + np.stack([pk0, a]).astype(np.uint64).tobytes())
        zero = c.ct_to_array(seal.Encryptor(c.ctx, pk).encrypt_zero())
        m = (zero[0] + _mulmod(zero[1], self._s_ntt, c.q)) % c.q[:, None]
        m = c.from_ntt(np.stack([m, np.ones_like(m)]))[0].astype(np.int64)
        m = np.where(m > q // 2, m - q, m)
        if np.abs(m).max() > _ZERO_NOISE_BOUND or np.any(m != m[0]):
            raise KernelInputError("the public key was not made from this secret key (special prime)")

    # -- encryption --------------------------------------------------------
    def _encrypt_polys(self, polys: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """polys (n, N) int64 -> list of seeds and c0 array (n, L, N) uint32."""
        c = self._c
        m_ntt = c.poly_to_ntt(polys)                           # (n, L, N)
        n = polys.shape[0]
        seeds = [os.urandom(_SEED_BYTES) for _ in range(n)]
        c0s = np.empty((n, c.L, c.N), dtype=np.uint64)
        for i in range(n):
            ct = self._enc.encrypt_symmetric(self._zero_pt)
            arr = c.ct_to_array(ct)                            # (2, L, N): c0=-a s+e, c1=a
            a2 = _expand_a(seeds[i], c.q, c.N)
            diff = (arr[1] + c.q[:, None] - a2) % c.q[:, None]
            c0s[i] = (arr[0] + m_ntt[i] + _mulmod(diff, self._s_ntt, c.q)) % c.q[:, None]
        return seeds, c0s

    def _quantize_x(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError("non-finite input")
        return np.rint(v * 2.0 ** self.params.log_scale_x).astype(np.int64)

    def encrypt_row(self, x: Sequence[float]) -> bytes:
        p = self.params
        row = np.asarray(x, dtype=np.float64).reshape(-1)
        if row.size != p.n_features:
            raise ValueError(f"expected {p.n_features} features, got {row.size}")
        poly = np.zeros((1, p.poly_modulus_degree), dtype=np.int64)
        poly[0, :row.size] = self._quantize_x(row)
        seeds, c0 = self._encrypt_polys(poly)
        return _pack_header(_KIND_REQ_ROW, p, 1, 1) + seeds[0] + c0.astype("<u4").tobytes()

    def encrypt_batch(self, X: np.ndarray) -> list[bytes]:
        """Rows are split into chunks of N; one request (bytes) per chunk."""
        p = self.params
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != p.n_features:
            raise ValueError(f"X must be (n, {p.n_features})")
        N = p.poly_modulus_degree
        out = []
        for s in range(0, X.shape[0], N):
            chunk = X[s:s + N]
            polys = np.zeros((p.n_features, N), dtype=np.int64)
            polys[:, :chunk.shape[0]] = self._quantize_x(chunk).T
            seeds, c0 = self._encrypt_polys(polys)
            body = b"".join(seeds) + c0.astype("<u4").tobytes()
            out.append(_pack_header(_KIND_REQ_BATCH, p, chunk.shape[0], p.n_features) + body)
        return out

    # -- decryption --------------------------------------------------------
    def _s_rows(self, positions: tuple[int, ...]) -> np.ndarray:
        """Matrix S with (c1*s)[k] = S[k] @ c1 (negacyclic)."""
        key = positions
        if key not in self._dec_rows_cache:
            N = self.params.poly_modulus_degree
            s = self._s
            rows = np.empty((len(positions), N), dtype=np.int64)
            idx = np.arange(N)
            for r, k in enumerate(positions):
                j = k - idx
                rows[r] = np.where(j >= 0, s[np.mod(j, N)], -s[np.mod(j, N)])
            self._dec_rows_cache[key] = rows
        return self._dec_rows_cache[key]

    def _resp_scale(self) -> float:
        return self.params.response_scale()

    def _centered(self, c0: np.ndarray, c1s: list[np.ndarray]) -> np.ndarray:
        """Decrypted values (c0 + c1*s), centered: mod 2^32 (switched responses) or mod Q via the CRT
        of both residues. c0 (L, ...) or (...,) words, c1s the matching (c1*s) products."""
        c = self._c
        if self.params.switches_modulus:
            m = (c0 + c1s[0]) & 0xFFFFFFFF
            return np.where(m >= 2 ** 31, m - 2 ** 32, m).astype(np.float64)
        residues = np.stack([(c0[j] + c1s[j]) % int(c.q[j]) for j in range(c.L)]).astype(np.uint64)
        m = c.crt(residues).astype(np.int64)                   # [0, Q), Q < 2^62
        return np.where(m > c.Qint // 2, m - c.Qint, m).astype(np.float64)

    def decrypt_scores(self, blob: bytes, n_outputs: int | None = None, n_rows: int | None = None) -> np.ndarray:
        """Decrypt a response (row or batch) -> array (n_rows, n_outputs).

        A 32-bit response carries one word per coefficient; a full-modulus one both 31-bit residues
        (c0 as (L, count), then c1 as (L, N)), so nothing is rounded (`Params.response_bits`).
        """
        p = self.params
        N = p.poly_modulus_degree
        c = self._c
        L = 1 if p.switches_modulus else c.L                   # words per coefficient
        mods = [2 ** 32] if p.switches_modulus else [int(q) for q in c.q]
        if len(blob) >= _HDR.size and blob[5:6] == bytes([_KIND_RESP_BATCH]):
            rows, nct = _parse_header(blob, _KIND_RESP_BATCH, p)
            K = p.n_outputs
            if nct != K or not (1 <= rows <= N):
                raise KernelInputError("bad batch response header")
            exp = _HDR.size + K * 4 * L * (rows + N)
            if len(blob) != exp:
                raise KernelInputError(f"batch response has {len(blob)} bytes, expected {exp}")
            body = np.frombuffer(blob, dtype="<u4", offset=_HDR.size).reshape(K, L * (rows + N))
            c0: np.ndarray = body[:, :L * rows].reshape(K, L, rows).transpose(1, 0, 2).astype(np.int64)   # (L, K, rows)
            c1: np.ndarray = body[:, L * rows:].reshape(K, L, N).transpose(1, 0, 2).astype(np.int64)      # (L, K, N)
            if not p.switches_modulus:
                _check_words(c0, c1, c.q)
            prods = [_negacyclic_ternary(c1[j], self._s, mods[j])[:, :rows] for j in range(L)]
            m = self._centered(c0 if L > 1 else c0[0], prods)
            res = (m / self._resp_scale()).T
        else:
            rows, nct = _parse_header(blob, _KIND_RESP_ROW, p)
            nb, d = p.n_blocks, p.n_features
            if rows != 1 or nct != nb:
                raise KernelInputError("bad row response header")
            counts = [p.outputs_in_block(j) for j in range(nb)]
            exp = _HDR.size + 4 * L * (sum(counts) + nb * N)
            if len(blob) != exp:
                raise KernelInputError(f"row response has {len(blob)} bytes, expected {exp}")
            words = np.frombuffer(blob, dtype="<u4", offset=_HDR.size).astype(np.int64)
            scores, off = [], 0
            for count in counts:
                c0 = words[off:off + L * count].reshape(L, count)
                c1 = words[off + L * count:off + L * (count + N)].reshape(L, N)
                off += L * (count + N)
                if not p.switches_modulus:
                    _check_words(c0, c1, c.q)
                S = self._s_rows(tuple(t * d + d - 1 for t in range(count)))
                # S ternary, c1 < 2^32: |S @ c1| < N 2^32 <= 2^47, exact in int64
                prods = [(S @ c1[j]) % mods[j] for j in range(L)]
                scores.append(self._centered(c0 if L > 1 else c0[0], prods))
            m = np.concatenate(scores)
            res = (m / self._resp_scale())[None, :]
        if n_outputs is not None and n_outputs != res.shape[1]:
            raise KernelInputError(f"response has {res.shape[1]} outputs, expected {n_outputs}")
        if n_rows is not None and n_rows != res.shape[0]:
            raise KernelInputError(f"response has {res.shape[0]} rows, expected {n_rows}")
        return res


def _check_words(c0: np.ndarray, c1: np.ndarray, q: np.ndarray) -> None:
    """Residue words (L, ...) must each be below their prime."""
    shape = (len(q),) + (1,) * (c0.ndim - 1)
    if np.any(c0 >= q.astype(np.int64).reshape(shape)) or np.any(c1 >= q.astype(np.int64).reshape(shape)):
        raise KernelInputError("response: residue out of range for the coefficient modulus")


def _negacyclic_ternary(c: np.ndarray, s: np.ndarray, modulus: int = 2 ** 32) -> np.ndarray:
    """(c * s) mod (X^N+1, modulus) exactly; c (..., N) in [0, 2^32), s ternary. FFT on 11-bit limbs.

    Each limb product is an integer below N 2^11 <= 2^23 (exact after rounding the FFT); the limbs
    are recombined mod `modulus` (2^32, or a prime < 2^31 so that (x mod q) 2^22 < 2^53).
    """
    N = s.shape[-1]
    fs = np.fft.rfft(np.concatenate([s, np.zeros(N)]).astype(np.float64))
    total = np.zeros(c.shape, dtype=np.int64)
    for sh in (0, 11, 22):
        limb = ((c >> sh) & 0x7FF).astype(np.float64)
        full = np.fft.irfft(np.fft.rfft(limb, n=2 * N, axis=-1) * fs, n=2 * N, axis=-1)
        exact = np.rint(full).astype(np.int64)
        neg = exact[..., :N] - exact[..., N:]
        if modulus == 2 ** 32:
            total = (total + (neg << sh)) & 0xFFFFFFFF
        else:
            total = (total + (np.mod(neg, modulus) << sh)) % modulus
    return total


def _zero_plaintext(c: _Ctx) -> seal.Plaintext:
    # NTT-form zero plaintext at the data level (scale 1)
    return seal.CKKSEncoder(c.ctx).encode(np.zeros(c.N // 2), 1.0)


def _load_secret_key(c: _Ctx, skb: bytes) -> seal.SecretKey:
    Lk = len(c.qk)
    if len(skb) != _SK_DATA_OFF + 8 * Lk * c.N:
        raise KernelInputError("secret key has wrong size for these parameters")
    s = np.frombuffer(skb, dtype=np.uint64, offset=_SK_DATA_OFF).reshape(Lk, c.N)
    _check_residues(s, c.qk, "secret key")
    return c.ctx.from_secret_str(skb)
