"""Packed homomorphic kernel for linear models (scores = X @ W.T + b).

Pure library code: no web, no framework imports.  Only numpy and the
``seal-python`` binding of Microsoft SEAL 4.x (PyPI ``seal-python``) are used.

Construction (see docs/packed-backend.md for the full description)
-----------------------------------------------------------------
* RLWE in a SEAL CKKS context, but with *coefficient* encoding: a plaintext is
  an integer polynomial ``m(X) = round(delta * v_i) X^i`` in Z_Q[X]/(X^N+1).
  The server only does plaintext-ciphertext products and additions, so the
  scheme is linearly homomorphic and no relinearisation / Galois keys exist.
* Ciphertext modulus at the data level: two 31-bit NTT primes (Q ~ 2^62), a
  16-bit special prime exists only because SEAL reserves the last prime of
  the chain.  N = 4096, total 78 bits <= 109 (HES 128-bit table).
* single row: x is one polynomial ``sum x_i X^i``; the server multiplies by a
  plaintext holding ``m = N // d`` weight rows reversed in blocks of length d,
  so coefficient ``t*d + d-1`` of the product is the t-th dot product (one
  NTT-domain multiply per block of m outputs, no rotations).
* bulk: feature i of up to N rows is one ciphertext ``sum_r x_{r,i} X^r``;
  score k is ``sum_i W_ki * ct_i`` (an exact modular matrix product done with
  float64 BLAS on 16-bit limbs), coefficient r is row r's score.
* requests are symmetric encryptions re-seeded on a SHAKE-256 seed: only the
  seed and c0 travel (c1 is expanded by the server), 31-bit words -> 4 bytes.
* responses: the server adds a fresh public-key encryption of zero
  (re-randomisation), transforms to coefficient form, adds the intercept,
  switches modulus to 2^32 and returns the full c1 but c0 ONLY at the
  coefficients that hold scores.  Coefficients holding partial sums are
  thus withheld, which is equivalent to a one-time-pad mask that is uniform
  mod q (perfect hiding) at zero byte cost.

Every byte string coming from the other party is parsed with numpy/struct and
fully validated (magic, version, parameter fingerprint, exact length, every
residue < its prime) before anything reaches the SEAL binding; SEAL only ever
sees bytes this module built itself.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, asdict
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np
import seal

__all__ = [
    "KernelInputError", "Params", "choose_params", "ClientKeys", "ServerModel",
    "PublicMaterial", "HES_MAX_BITS",
]

# Homomorphic Encryption Standard, 128-bit classical security, ternary secret.
HES_MAX_BITS = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}

_MAGIC = b"SEIP"
_VERSION = 1
_KIND_REQ_ROW, _KIND_REQ_BATCH, _KIND_RESP_ROW, _KIND_RESP_BATCH, _KIND_PUB, _KIND_SECRET = 1, 2, 3, 4, 5, 6
# magic(4) version(1) kind(1) reserved(2) fingerprint(8) n_rows(u32) n_ct(u32)
_HDR = struct.Struct("<4sBBH8sII")
_SEED_BYTES = 32


class KernelInputError(ValueError):
    """Raised for any malformed / mismatching ciphertext or key input."""


# ----------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Params:
    scheme: str = "rlwe-coeff/ckks-ctx"          # SEAL CKKS context, coefficient encoding
    poly_modulus_degree: int = 4096
    coeff_modulus_bits: Tuple[int, ...] = (31, 31, 16)   # last prime = SEAL special prime
    log_scale_x: int = 28                        # client input scale 2^28
    log_scale_w: int = 23                        # server weight scale 2^23
    response_bits: int = 32                      # modulus of the returned ciphertext
    mode: str = "single"
    n_features: int = 784
    n_outputs: int = 10

    # -- derived -----------------------------------------------------------
    def total_coeff_modulus_bits(self) -> int:
        return int(sum(self.coeff_modulus_bits))

    def security_bits_ok(self) -> bool:
        """True iff total modulus bits fit the HES 128-bit table for N."""
        lim = HES_MAX_BITS.get(self.poly_modulus_degree)
        return lim is not None and self.total_coeff_modulus_bits() <= lim

    @property
    def data_primes(self) -> Tuple[int, ...]:
        return _primes(self.poly_modulus_degree, self.coeff_modulus_bits)[:-1]

    @property
    def key_primes(self) -> Tuple[int, ...]:
        return _primes(self.poly_modulus_degree, self.coeff_modulus_bits)

    @property
    def Q(self) -> int:
        return int(np.prod([int(p) for p in self.data_primes], dtype=object))

    @property
    def outputs_per_block(self) -> int:
        return max(1, self.poly_modulus_degree // self.n_features)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_outputs // self.outputs_per_block)

    def max_abs_score(self) -> float:
        """|score| must stay below this (headroom factor 2 kept)."""
        return self.Q / 4.0 / 2.0 ** (self.log_scale_x + self.log_scale_w)

    def fingerprint(self) -> bytes:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).digest()[:8]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "Params":
        d = json.loads(s)
        d["coeff_modulus_bits"] = tuple(d["coeff_modulus_bits"])
        return cls(**d)

    def validate(self) -> None:
        if not self.security_bits_ok():
            raise ValueError(f"parameters exceed HES 128-bit bound: {self.total_coeff_modulus_bits()} bits "
                             f"for N={self.poly_modulus_degree}")
        if any(b > 31 for b in self.coeff_modulus_bits[:-1]) or len(self.coeff_modulus_bits) < 2:
            raise ValueError("data primes must be <= 31 bits (exact uint64 arithmetic)")
        if self.mode not in ("single", "bulk"):
            raise ValueError("mode must be 'single' or 'bulk'")
        if self.mode == "single" and self.n_features > self.poly_modulus_degree:
            raise ValueError("single mode needs n_features <= N")
        if self.response_bits not in (32,):
            raise ValueError("response_bits must be 32")
        resp_scale = self.log_scale_x + self.log_scale_w + self.response_bits - math.log2(self.Q)
        if resp_scale < 16:
            raise ValueError("response scale too small for 1e-3 accuracy")


def choose_params(n_features: int, n_outputs: int, mode: str = "single",
                  max_abs_score: float = 512.0) -> Params:
    """Smallest N that fits the layout, validated for 128-bit security.

    ``max_abs_score`` bounds |x.w_k + b_k| (scores above it wrap around).
    """
    if n_features < 1 or n_outputs < 1:
        raise ValueError("n_features and n_outputs must be >= 1")
    if mode == "single":
        N = 4096
        while N < n_features:
            N *= 2
        if N > 32768:
            raise ValueError("n_features too large for single-row packing")
    elif mode == "bulk":
        N = 4096
    else:
        raise ValueError("mode must be 'single' or 'bulk'")
    # Q ~ 2^62; keep Q/4 > max_abs_score * 2^(lx+lw)
    budget = 60 - max(0, math.ceil(math.log2(max(max_abs_score, 1.0))))
    lw = min(23, budget // 2)
    lx = budget - lw
    p = Params(poly_modulus_degree=N, log_scale_x=lx, log_scale_w=lw, mode=mode,
               n_features=int(n_features), n_outputs=int(n_outputs))
    p.validate()
    return p


# ----------------------------------------------------------------------------
# SEAL plumbing
# ----------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _primes(N: int, bits: Tuple[int, ...]) -> Tuple[int, ...]:
    return tuple(int(m.value()) for m in seal.CoeffModulus.Create(N, list(bits)))


_CT_DATA_OFF = 113   # SEAL 4.x Ciphertext serialization, compr_mode none
_SK_DATA_OFF = 88    # SEAL 4.x SecretKey (Plaintext) serialization


class _Ctx:
    """SEAL context plus byte templates; one per Params (cached)."""

    def __init__(self, params: Params):
        params.validate()
        self.params = params
        N = params.poly_modulus_degree
        parms = seal.EncryptionParameters(seal.scheme_type.ckks)
        parms.set_poly_modulus_degree(N)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(N, list(params.coeff_modulus_bits)))
        self.ctx = seal.SEALContext(parms, True, seal.sec_level_type.tc128)
        if not self.ctx.parameters_set():
            raise ValueError("SEAL rejected parameters: " + self.ctx.parameter_error_message())
        self.N = N
        self.q = np.array(params.data_primes, dtype=np.uint64)            # (L,)
        self.qk = np.array(params.key_primes, dtype=np.uint64)            # (L+1,)
        self.L = len(self.q)
        self.ev = seal.Evaluator(self.ctx)
        # templates (any key will do: only the metadata part is reused)
        kg = seal.KeyGenerator(self.ctx)
        pk = kg.create_public_key()
        enc = seal.Encryptor(self.ctx, pk)
        ct = enc.encrypt_zero()
        self._ct_tmpl = bytes(ct.to_string()[:_CT_DATA_OFF])               # data level, NTT
        self._pk_tmpl = bytes(pk.to_string()[:_CT_DATA_OFF])               # key level, NTT
        tmp = bytearray(self._ct_tmpl)
        tmp[48] = 0
        self._ct_tmpl_coeff = bytes(tmp)
        self._check_templates()
        q = [int(v) for v in self.q]
        self.Qint = int(np.prod(np.array(q, dtype=object)))
        if self.L == 2:
            self.crt_inv = pow(q[0], -1, q[1])

    def _check_templates(self):
        N, L = self.N, self.L
        t = self._ct_tmpl
        if t[:4] != bytes.fromhex("5ea11004") and t[:2] != bytes.fromhex("5ea1"):
            raise RuntimeError("unexpected SEAL serialization header")
        size, n, lq = struct.unpack_from("<QQQ", t, 49)
        if (size, n, lq) != (2, N, L) or struct.unpack_from("<Q", t, 105)[0] != 2 * L * N:
            raise RuntimeError("unexpected SEAL ciphertext layout (SEAL version mismatch?)")

    # -- byte builders for SEAL objects (only from validated numpy arrays) --
    def _ct_bytes(self, arr: np.ndarray, ntt: bool) -> bytes:
        hdr = self._ct_tmpl if ntt else self._ct_tmpl_coeff
        return hdr + np.ascontiguousarray(arr, dtype=np.uint64).tobytes()

    def ct_from_array(self, arr: np.ndarray, ntt: bool = True) -> "seal.Ciphertext":
        c = seal.Ciphertext()
        c.load_bytes(self.ctx, self._ct_bytes(arr, ntt))
        return c

    def ct_to_array(self, ct) -> np.ndarray:
        b = ct.to_string()
        L = ct.coeff_modulus_size()
        return np.frombuffer(b, dtype=np.uint64, offset=_CT_DATA_OFF).reshape(ct.size(), L, self.N)

    def to_ntt(self, arr: np.ndarray) -> np.ndarray:
        """(2, L, N) coefficient-form residues -> NTT form (SEAL's NTT)."""
        c = self.ct_from_array(arr, ntt=False)
        self.ev.transform_to_ntt_inplace(c)
        return self.ct_to_array(c)

    def from_ntt(self, arr: np.ndarray) -> np.ndarray:
        c = self.ct_from_array(arr, ntt=True)
        self.ev.transform_from_ntt_inplace(c)
        return self.ct_to_array(c)

    def poly_to_ntt(self, polys: np.ndarray) -> np.ndarray:
        """polys: (..., N) signed int64 -> (..., L, N) NTT residues (uint64).

        Two polynomials per SEAL call (as c0 and c1 of a coefficient-form
        ciphertext).  SEAL refuses a transparent ciphertext (c1 == 0), so 1 is
        added to c1's constant term and NTT(1) = (1,...,1) subtracted after.
        """
        polys = np.asarray(polys, dtype=np.int64)
        flat = polys.reshape(-1, self.N)
        n = flat.shape[0]
        qi = self.q[:, None].astype(np.int64)
        out = np.empty((n, self.L, self.N), dtype=np.uint64)
        for j in range(0, n, 2):
            arr = np.zeros((2, self.L, self.N), dtype=np.uint64)
            arr[0] = np.mod(flat[j][None, :], qi)
            if j + 1 < n:
                arr[1] = np.mod(flat[j + 1][None, :], qi)
            arr[1, :, 0] = (arr[1, :, 0] + np.uint64(1)) % self.q
            res = self.to_ntt(arr)
            out[j] = res[0]
            if j + 1 < n:
                out[j + 1] = (res[1] + self.q[:, None] - np.uint64(1)) % self.q[:, None]
        return out.reshape(polys.shape[:-1] + (self.L, self.N))

    def crt(self, res: np.ndarray) -> np.ndarray:
        """(L=2, ...) residues -> values in [0, Q) as uint64."""
        q0, q1 = int(self.q[0]), int(self.q[1])
        r0 = res[0].astype(np.int64)
        r1 = res[1].astype(np.int64)
        t = np.mod(r1 - np.mod(r0, q1), q1).astype(np.uint64)
        t = (t * np.uint64(self.crt_inv)) % np.uint64(q1)
        return res[0].astype(np.uint64) + np.uint64(q0) * t

    def modswitch32(self, v: np.ndarray) -> np.ndarray:
        """values mod Q (uint64) -> round(v * 2^32 / Q) mod 2^32 (uint32)."""
        f = v.astype(np.float64) * (2.0 ** 32 / float(self.Qint))
        return (np.rint(f).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)


@lru_cache(maxsize=8)
def _ctx_for(params: Params) -> _Ctx:
    return _Ctx(params)


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


def _mulmod(a: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pointwise (a*b) mod q, residues < 2^31 (exact in uint64). q broadcasts over axis -2."""
    return (a * b) % q[:, None]


def _pack_header(kind: int, params: Params, n_rows: int, n_ct: int) -> bytes:
    return _HDR.pack(_MAGIC, _VERSION, kind, 0, params.fingerprint(), n_rows, n_ct)


def _parse_header(buf: bytes, kind: int, params: Params) -> Tuple[int, int]:
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise KernelInputError("expected bytes")
    if len(buf) < _HDR.size:
        raise KernelInputError(f"input too short ({len(buf)} bytes)")
    magic, ver, k, _res, fp, n_rows, n_ct = _HDR.unpack_from(buf, 0)
    if magic != _MAGIC:
        raise KernelInputError("bad magic: not a SEI packed-kernel message")
    if ver != _VERSION:
        raise KernelInputError(f"unsupported message version {ver}")
    if k != kind:
        raise KernelInputError(f"wrong message kind {k}, expected {kind}")
    if fp != params.fingerprint():
        raise KernelInputError("parameter fingerprint mismatch (message made for other parameters)")
    return n_rows, n_ct


def _check_residues(arr: np.ndarray, q: np.ndarray, what: str) -> None:
    # arr (..., L, N) ; every residue must be < its prime
    if np.any(arr >= q.astype(arr.dtype)[:, None]):
        raise KernelInputError(f"{what}: residue out of range for the coefficient modulus")


# ----------------------------------------------------------------------------
# client
# ----------------------------------------------------------------------------
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
    def generate(cls, params: Params) -> "ClientKeys":
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
    def from_secret_bytes(cls, blob: bytes) -> "ClientKeys":
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
    def _encrypt_polys(self, polys: np.ndarray) -> Tuple[List[bytes], np.ndarray]:
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

    def encrypt_batch(self, X: np.ndarray) -> List[bytes]:
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
    def _s_rows(self, positions: Tuple[int, ...]) -> np.ndarray:
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

    def decrypt_scores(self, blob: bytes, n_outputs: Optional[int] = None, n_rows: Optional[int] = None) -> np.ndarray:
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
            m_per, nb = p.outputs_per_block, p.n_blocks
            if rows != 1 or nct != nb:
                raise KernelInputError("bad row response header")
            exp = _HDR.size + nb * 4 * (m_per + N)
            if len(blob) != exp:
                raise KernelInputError(f"row response has {len(blob)} bytes, expected {exp}")
            body = np.frombuffer(blob, dtype="<u4", offset=_HDR.size).reshape(nb, m_per + N)
            d = p.n_features
            pos = tuple(t * d + d - 1 for t in range(m_per))
            S = self._s_rows(pos)
            c1 = body[:, m_per:].astype(np.int64)
            m = (body[:, :m_per].astype(np.int64) + c1 @ S.T) & 0xFFFFFFFF
            m = np.where(m >= 2 ** 31, m - 2 ** 32, m).astype(np.float64)
            res = (m.reshape(-1)[:p.n_outputs] / self._resp_scale())[None, :]
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


def key_id_of(public_bytes: bytes) -> str:
    return base64.b32encode(hashlib.sha256(public_bytes).digest()[:20]).decode().lower()


def _expand_a_key(seed: bytes, c: _Ctx) -> np.ndarray:
    return _expand_a(b"pk" + seed, c.qk, c.N)


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


# ----------------------------------------------------------------------------
# server
# ----------------------------------------------------------------------------
class PublicMaterial:
    """What the server caches per client key: SEAL PublicKey + Encryptor."""

    def __init__(self, c: _Ctx, pk, key_id: str):
        self.key_id = key_id
        self.encryptor = seal.Encryptor(c.ctx, pk)


class ServerModel:
    def __init__(self, W: np.ndarray, b: np.ndarray, params: Optional[Params] = None, mode: str = "single"):
        W = np.asarray(W, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if W.ndim != 2 or b.shape[0] != W.shape[0]:
            raise ValueError("W must be (n_outputs, n_features) and b (n_outputs,)")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError("non-finite weights")
        K, d = W.shape
        self.params = params or choose_params(d, K, mode)
        p = self.params
        if (p.n_features, p.n_outputs) != (d, K):
            raise ValueError("params do not match W shape")
        self._c = c = _ctx_for(p)
        N = p.poly_modulus_degree
        self.W, self.b = W, b
        self.Wq = np.rint(W * 2.0 ** p.log_scale_w).astype(np.int64)
        if np.abs(self.Wq).max(initial=0) >= 2 ** 40:
            raise ValueError("weights too large for the parameter scale")
        self.bq = np.array([int(round(v * 2.0 ** (p.log_scale_x + p.log_scale_w))) for v in b], dtype=object)
        self.bq_mod = np.array([int(v) % c.Qint for v in self.bq], dtype=np.uint64)
        # --- single-row plaintexts: block j holds outputs j*m .. j*m+m-1
        m = p.outputs_per_block
        self.positions = np.array([t * d + d - 1 for t in range(m)])
        if d <= N:
            polys = np.zeros((p.n_blocks, N), dtype=np.int64)
            for k in range(K):
                j, t = divmod(k, m)
                polys[j, t * d: t * d + d] = self.Wq[k, ::-1]
            self.P = c.poly_to_ntt(polys)                         # (nb, L, N)
        else:
            self.P = None
        # --- bulk: limbs so that float64 matmul is exact
        wbits = int(np.abs(self.Wq).max(initial=1)).bit_length()
        dbits = int(d).bit_length()
        self.limb_bits = max(4, min(16, 52 - wbits - dbits))
        self.n_limbs = -(-31 // self.limb_bits)
        self.Wf = self.Wq.astype(np.float64)                       # (K, d)
        self._bias_row = self.bq_mod

    # -- key material ------------------------------------------------------
    def load_public(self, pub: bytes) -> PublicMaterial:
        c, p = self._c, self.params
        _parse_header(pub, _KIND_PUB, p)
        Lk = len(c.qk)
        exp = _HDR.size + _SEED_BYTES + 4 * Lk * c.N
        if len(pub) != exp:
            raise KernelInputError(f"public key has {len(pub)} bytes, expected {exp}")
        seed = bytes(pub[_HDR.size:_HDR.size + _SEED_BYTES])
        pk0 = np.frombuffer(pub, dtype="<u4", offset=_HDR.size + _SEED_BYTES).reshape(Lk, c.N).astype(np.uint64)
        _check_residues(pk0, c.qk, "public key")
        pk1 = _expand_a_key(seed, c)
        data = np.stack([pk0, pk1])
        try:
            pk = c.ctx.from_public_str(c._pk_tmpl + np.ascontiguousarray(data, dtype=np.uint64).tobytes())
        except Exception as e:
            raise KernelInputError(f"public key rejected by SEAL: {e}") from None
        return PublicMaterial(c, pk, key_id_of(bytes(pub)))

    # -- request parsing ---------------------------------------------------
    def _parse_request(self, blob: bytes, kind: int) -> Tuple[int, List[bytes], np.ndarray]:
        c, p = self._c, self.params
        n_rows, n_ct = _parse_header(blob, kind, p)
        if kind == _KIND_REQ_ROW:
            if n_rows != 1 or n_ct != 1:
                raise KernelInputError("row request must hold exactly one ciphertext")
        else:
            if n_ct != p.n_features or not (1 <= n_rows <= c.N):
                raise KernelInputError(f"batch request must hold {p.n_features} ciphertexts and 1..{c.N} rows")
        exp = _HDR.size + n_ct * (_SEED_BYTES + 4 * c.L * c.N)
        if len(blob) != exp:
            raise KernelInputError(f"request has {len(blob)} bytes, expected {exp}")
        off = _HDR.size
        seeds = [bytes(blob[off + i * _SEED_BYTES: off + (i + 1) * _SEED_BYTES]) for i in range(n_ct)]
        off += n_ct * _SEED_BYTES
        c0 = np.frombuffer(blob, dtype="<u4", offset=off).reshape(n_ct, c.L, c.N)
        if np.any(c0 >= c.q.astype(np.uint32)[None, :, None]):
            raise KernelInputError("request: residue out of range for the coefficient modulus")
        return n_rows, seeds, c0

    def _finish(self, acc: np.ndarray, pub: PublicMaterial) -> np.ndarray:
        """acc (2, L, N) NTT -> re-randomised, coefficient form, CRT to [0,Q) (2, N) uint64."""
        c = self._c
        z = c.ct_to_array(pub.encryptor.encrypt_zero())
        acc = (acc + z) % c.q[None, :, None]
        coeff = c.from_ntt(acc)
        return np.stack([c.crt(coeff[0]), c.crt(coeff[1])])

    def predict_row(self, ct_bytes: bytes, pub: PublicMaterial) -> bytes:
        c, p = self._c, self.params
        if self.P is None:
            raise KernelInputError("model not set up for single-row mode")
        if not isinstance(pub, PublicMaterial):
            raise KernelInputError("pub must come from load_public()")
        _, seeds, c0 = self._parse_request(ct_bytes, _KIND_REQ_ROW)
        a = _expand_a(seeds[0], c.q, c.N)
        x0 = c0[0].astype(np.uint64)
        m = p.outputs_per_block
        Q = np.uint64(c.Qint)
        parts = [_pack_header(_KIND_RESP_ROW, p, 1, p.n_blocks)]
        for j in range(p.n_blocks):
            acc = np.stack([_mulmod(x0, self.P[j], c.q), _mulmod(a, self.P[j], c.q)])
            v = self._finish(acc, pub)
            c0r = v[0, self.positions]
            ks = np.arange(j * m, j * m + m)
            bias = np.array([self.bq_mod[k] if k < p.n_outputs else 0 for k in ks], dtype=np.uint64)
            c0r = (c0r + bias) % Q      # both < 2^62: no overflow
            parts.append(c.modswitch32(c0r).astype("<u4").tobytes())
            parts.append(c.modswitch32(v[1]).astype("<u4").tobytes())
        return b"".join(parts)

    def predict_batch(self, req: bytes, pub: PublicMaterial) -> bytes:
        c, p = self._c, self.params
        if not isinstance(pub, PublicMaterial):
            raise KernelInputError("pub must come from load_public()")
        n_rows, seeds, c0 = self._parse_request(req, _KIND_REQ_BATCH)
        d, L, N, K = p.n_features, c.L, c.N, p.n_outputs
        A = np.empty((d, L, N), dtype=np.uint32)
        for i in range(d):
            A[i] = _expand_a(seeds[i], c.q, N)
        acc = np.empty((K, 2, L, N), dtype=np.uint64)
        for half, M in ((0, c0), (1, A)):
            M2 = M.reshape(d, L * N)
            tot = None
            for li in range(self.n_limbs):
                sh = li * self.limb_bits
                limb = ((M2 >> sh) & ((1 << self.limb_bits) - 1)).astype(np.float64)
                S = (self.Wf @ limb).astype(np.int64).reshape(K, L, N)     # exact: |S| < 2^52
                S = np.mod(S, c.q.astype(np.int64)[None, :, None]).astype(np.uint64)
                # (S * 2^sh) mod q exactly: S < 2^31 and sh < 31
                S = (S << np.uint64(sh)) % c.q[None, :, None]
                tot = S if tot is None else (tot + S) % c.q[None, :, None]
            acc[:, half] = tot
        Q = np.uint64(c.Qint)
        out = [_pack_header(_KIND_RESP_BATCH, p, n_rows, K)]
        for k in range(K):
            v = self._finish(acc[k], pub)
            c0r = (v[0, :n_rows] + self.bq_mod[k]) % Q
            out.append(c.modswitch32(c0r).astype("<u4").tobytes())
            out.append(c.modswitch32(v[1]).astype("<u4").tobytes())
        return b"".join(out)
