"""Server side: `ServerModel` holds the quantised weights and evaluates encrypted requests."""

from __future__ import annotations

import numpy as np
import seal

from .accuracy import INT64_SAFE, exact_limb_bits
from .params import Params
from .seal_context import _Ctx, _ctx_for, _expand_a_key, _mulmod
from .wire import (
    _HDR,
    _KIND_PUB,
    _KIND_REQ_BATCH,
    _KIND_REQ_ROW,
    _KIND_RESP_BATCH,
    _KIND_RESP_ROW,
    _SEED_BYTES,
    KernelInputError,
    _check_residues,
    _expand_a,
    _pack_header,
    _parse_header,
)

__all__ = ["PublicMaterial", "ServerModel"]


class PublicMaterial:
    """What the server caches per client key: SEAL PublicKey + Encryptor."""

    def __init__(self, c: _Ctx, pk: seal.PublicKey) -> None:
        self.encryptor = seal.Encryptor(c.ctx, pk)


class ServerModel:
    def __init__(self, W: np.ndarray, b: np.ndarray, params: Params):
        W = np.asarray(W, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if W.ndim != 2 or b.shape[0] != W.shape[0]:
            raise ValueError("W must be (n_outputs, n_features) and b (n_outputs,)")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError("non-finite weights")
        K, d = W.shape
        self.params = params  # proven for W, b and the input bounds by `accuracy.plan`
        p = self.params
        if (p.n_features, p.n_outputs) != (d, K):
            raise ValueError("params do not match W shape")
        self._c = c = _ctx_for(p)
        N = p.poly_modulus_degree
        self.W, self.b = W, b
        if np.abs(W).max(initial=0.0) * 2.0 ** p.log_scale_w >= INT64_SAFE:
            raise ValueError(f"weights up to {np.abs(W).max():.3g} overflow int64 at scale 2^{p.log_scale_w}")
        self.Wq = np.rint(W * 2.0 ** p.log_scale_w).astype(np.int64)
        self.bq = np.array([int(round(v * 2.0 ** (p.log_scale_x + p.log_scale_w))) for v in b], dtype=object)
        self.bq_mod = np.array([int(v) % c.Qint for v in self.bq], dtype=np.uint64)
        self.bq_res = np.array([[int(v) % int(qj) for v in self.bq] for qj in c.q], dtype=np.uint64).reshape(c.L, K)
        # --- single-row plaintexts: block j holds outputs j*m .. j*m+m-1
        m = p.outputs_per_block
        self.positions = np.array([t * d + d - 1 for t in range(m)])
        if d <= N:
            polys = np.zeros((p.n_blocks, N), dtype=np.int64)
            for k in range(K):
                j, t = divmod(k, m)
                polys[j, t * d: t * d + d] = self.Wq[k, ::-1]
            self.P: np.ndarray | None = c.poly_to_ntt(polys)      # (nb, L, N)
        else:
            self.P = None
        # --- bulk: the widest limbs whose float64 products and sums are all exact (< 2^53), or none
        try:
            self.limb_bits: int | None = exact_limb_bits(self.Wq)
        except ValueError:
            if p.mode == "bulk":
                raise
            self.limb_bits = None
        self.n_limbs = -(-31 // self.limb_bits) if self.limb_bits else 0
        self.Wf = self.Wq.astype(np.float64)                       # (K, d)

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
        return PublicMaterial(c, pk)

    # -- request parsing ---------------------------------------------------
    def _parse_request(self, blob: bytes, kind: int) -> tuple[int, list[bytes], np.ndarray]:
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

    def request_rows(self, blob: bytes) -> int:
        """Rows a request says it holds (its header), checked before any evaluation."""
        kind = _KIND_REQ_BATCH if self.params.mode == "bulk" else _KIND_REQ_ROW
        return _parse_header(blob, kind, self.params)[0]

    def _finish(self, acc: np.ndarray, pub: PublicMaterial) -> np.ndarray:
        """acc (2, L, N) NTT -> re-randomised, coefficient form (2, L, N) residues uint64."""
        c = self._c
        z = c.ct_to_array(pub.encryptor.encrypt_zero())
        acc = (acc + z) % c.q[None, :, None]
        return c.from_ntt(acc)

    def _response_part(self, v: np.ndarray, positions: np.ndarray | slice, outputs: slice) -> bytes:
        """c0 at `positions` (plus the intercept) and the full c1 of a finished ciphertext `v`.

        32-bit responses: CRT to [0, Q), switched to 2^32, one word each. Full-modulus responses:
        both 31-bit residues of each coefficient (c0 as (L, count), then c1 as (L, N)), no rounding.
        """
        c = self._c
        if self.params.switches_modulus:
            Q = np.uint64(c.Qint)
            c0 = (c.crt(v[0])[positions] + self.bq_mod[outputs]) % Q          # < 2^62 each
            return (c.modswitch32(c0).astype("<u4").tobytes()
                    + c.modswitch32(c.crt(v[1])).astype("<u4").tobytes())
        c0 = (v[0][:, positions] + self.bq_res[:, outputs]) % c.q[:, None]
        return c0.astype("<u4").tobytes() + v[1].astype("<u4").tobytes()

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
        parts = [_pack_header(_KIND_RESP_ROW, p, 1, p.n_blocks)]
        for j in range(p.n_blocks):
            acc = np.stack([_mulmod(x0, self.P[j], c.q), _mulmod(a, self.P[j], c.q)])
            v = self._finish(acc, pub)
            count = p.outputs_in_block(j)   # c0 only where scores are: nothing past the last output
            parts.append(self._response_part(v, self.positions[:count], slice(j * m, j * m + count)))
        return b"".join(parts)

    def predict_batch(self, req: bytes, pub: PublicMaterial) -> bytes:
        c, p = self._c, self.params
        if not isinstance(pub, PublicMaterial):
            raise KernelInputError("pub must come from load_public()")
        if not self.limb_bits:
            raise KernelInputError("model not set up for bulk mode (no exact limb width)")
        n_rows, seeds, c0 = self._parse_request(req, _KIND_REQ_BATCH)
        d, L, N, K = p.n_features, c.L, c.N, p.n_outputs
        A = np.empty((d, L, N), dtype=np.uint32)
        for i in range(d):
            A[i] = _expand_a(seeds[i], c.q, N)
        acc = np.empty((K, 2, L, N), dtype=np.uint64)
        for half, M in ((0, c0), (1, A)):
            M2 = M.reshape(d, L * N)
            tot: np.ndarray | None = None
            for li in range(self.n_limbs):
                sh = li * self.limb_bits
                limb = ((M2 >> sh) & ((1 << self.limb_bits) - 1)).astype(np.float64)
                S = (self.Wf @ limb).astype(np.int64).reshape(K, L, N)     # exact: exact_limb_bits
                S = np.mod(S, c.q.astype(np.int64)[None, :, None]).astype(np.uint64)
                # (S * 2^sh) mod q exactly: S < 2^31 and sh < 31
                S = (S << np.uint64(sh)) % c.q[None, :, None]
                tot = S if tot is None else (tot + S) % c.q[None, :, None]
            if tot is None:  # not reached: bulk mode has at least one limb (checked above)
                raise KernelInputError("model not set up for bulk mode (no exact limb width)")
            acc[:, half] = tot
        out = [_pack_header(_KIND_RESP_BATCH, p, n_rows, K)]
        for k in range(K):
            v = self._finish(acc[k], pub)
            out.append(self._response_part(v, slice(0, n_rows), slice(k, k + 1)))
        return b"".join(out)
