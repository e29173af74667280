"""SEAL plumbing: the per-Params context `_Ctx`, NTT and CRT helpers, modular arithmetic."""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np
import seal

from .params import Params
from .wire import _expand_a

__all__: list[str] = []

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

    def _check_templates(self) -> None:
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

    def ct_from_array(self, arr: np.ndarray, ntt: bool = True) -> seal.Ciphertext:
        c = seal.Ciphertext()
        c.load_bytes(self.ctx, self._ct_bytes(arr, ntt))
        return c

    def ct_to_array(self, ct: seal.Ciphertext) -> np.ndarray:
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


def _mulmod(a: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pointwise (a*b) mod q, residues < 2^31 (exact in uint64). q broadcasts over axis -2."""
    return (a * b) % q[:, None]


def _expand_a_key(seed: bytes, c: _Ctx) -> np.ndarray:
    return _expand_a(b"pk" + seed, c.qk, c.N)
