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
    key_id_of,
)

__all__ = ["ClientKeys"]


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
        self._dec_rows_cache = {}

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

    @property
    def key_id(self) -> str:
        return key_id_of(self._pub)

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
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != p.n_features:
            raise ValueError(f"expected {p.n_features} features, got {x.size}")
        poly = np.zeros((1, p.poly_modulus_degree), dtype=np.int64)
        poly[0, :x.size] = self._quantize_x(x)
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
        p = self.params
        return 2.0 ** (p.log_scale_x + p.log_scale_w) * 2.0 ** p.response_bits / float(self._c.Qint)

    def decrypt_scores(self, blob: bytes, n_outputs: int | None = None, n_rows: int | None = None) -> np.ndarray:
        """Decrypt a response (row or batch) -> array (n_rows, n_outputs)."""
        p = self.params
        N = p.poly_modulus_degree
        if len(blob) >= _HDR.size and blob[5:6] == bytes([_KIND_RESP_BATCH]):
            rows, nct = _parse_header(blob, _KIND_RESP_BATCH, p)
            K = p.n_outputs
            if nct != K or not (1 <= rows <= N):
                raise KernelInputError("bad batch response header")
            exp = _HDR.size + K * 4 * (rows + N)
            if len(blob) != exp:
                raise KernelInputError(f"batch response has {len(blob)} bytes, expected {exp}")
            body = np.frombuffer(blob, dtype="<u4", offset=_HDR.size).reshape(K, rows + N)
            c0 = body[:, :rows].astype(np.int64)
            c1 = body[:, rows:].astype(np.int64)
            prod = _negacyclic_ternary(c1, self._s)[:, :rows]
            m = (c0 + prod) & 0xFFFFFFFF
            m = np.where(m >= 2 ** 31, m - 2 ** 32, m).astype(np.float64)
            res = (m / self._resp_scale()).T
        else:
            rows, nct = _parse_header(blob, _KIND_RESP_ROW, p)
            nb, d = p.n_blocks, p.n_features
            if rows != 1 or nct != nb:
                raise KernelInputError("bad row response header")
            counts = [p.outputs_in_block(j) for j in range(nb)]
            exp = _HDR.size + 4 * (sum(counts) + nb * N)
            if len(blob) != exp:
                raise KernelInputError(f"row response has {len(blob)} bytes, expected {exp}")
            words = np.frombuffer(blob, dtype="<u4", offset=_HDR.size).astype(np.int64)
            scores, off = [], 0
            for count in counts:
                c0, c1 = words[off:off + count], words[off + count:off + count + N]
                off += count + N
                S = self._s_rows(tuple(t * d + d - 1 for t in range(count)))
                scores.append((c0 + S @ c1) & 0xFFFFFFFF)
            m = np.concatenate(scores)
            m = np.where(m >= 2 ** 31, m - 2 ** 32, m).astype(np.float64)
            res = (m / self._resp_scale())[None, :]
        if n_outputs is not None and n_outputs != res.shape[1]:
            raise KernelInputError(f"response has {res.shape[1]} outputs, expected {n_outputs}")
        if n_rows is not None and n_rows != res.shape[0]:
            raise KernelInputError(f"response has {res.shape[0]} rows, expected {n_rows}")
        return res


def _negacyclic_ternary(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(c * s) mod (X^N+1, 2^32) exactly; c (..., N) in [0,2^32), s ternary. FFT on 11-bit limbs."""
    N = s.shape[-1]
    fs = np.fft.rfft(np.concatenate([s, np.zeros(N)]).astype(np.float64))
    total = np.zeros(c.shape, dtype=np.int64)
    for sh in (0, 11, 22):
        limb = ((c >> sh) & 0x7FF).astype(np.float64)
        full = np.fft.irfft(np.fft.rfft(limb, n=2 * N, axis=-1) * fs, n=2 * N, axis=-1)
        full = np.rint(full).astype(np.int64)
        neg = full[..., :N] - full[..., N:]
        total = (total + (neg << sh)) & 0xFFFFFFFF
    return total


def _zero_plaintext(c: _Ctx):
    # NTT-form zero plaintext at the data level (scale 1)
    return seal.CKKSEncoder(c.ctx).encode(np.zeros(c.N // 2), 1.0)


def _load_secret_key(c: _Ctx, skb: bytes):
    Lk = len(c.qk)
    if len(skb) != _SK_DATA_OFF + 8 * Lk * c.N:
        raise KernelInputError("secret key has wrong size for these parameters")
    s = np.frombuffer(skb, dtype=np.uint64, offset=_SK_DATA_OFF).reshape(Lk, c.N)
    _check_residues(s, c.qk, "secret key")
    return c.ctx.from_secret_str(skb)
