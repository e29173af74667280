"""SEAL plumbing for the tree engine: the BGV context of a `TreeParams`, per-level byte templates, seeded `a`.

A SEAL 4.x ciphertext serialises (compression none) as a 113-byte header (SEAL header, parms_id, NTT flag,
size, N, number of primes, scale, correction factor, array header) followed by ``size * primes * N`` uint64
residues. Uploaded ciphertexts are rebuilt from that header and validated residues; SEAL checks them again on load.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache

import numpy as np
import seal

from .params import TreeParams

__all__ = ["SealContext", "context_for", "expand_a"]

CT_HEADER = 113
_CF_OFF = 81        # correction factor (uint64) inside the ciphertext header
_PT_HEADER = 88     # SEAL Plaintext serialisation header (the secret key is one)


_A_LABEL = b"SEI-trees-a/aes256ctr"


def expand_a(seed: bytes, primes: tuple[int, ...], n: int, out: np.ndarray | None = None) -> np.ndarray:
    """Uniform residues (len(primes), n) from a 32-byte seed (into ``out`` if given). Prime j's row reads the
    AES-256-CTR keystream (key SHA-256(label | seed), initial counter block j << 64) as little-endian words (4
    bytes for primes of up to 32 bits, else 8), masks each to the prime's bit length and keeps, in order, the
    first n below the prime. Both sides call this; the seed is what travels instead of c1. AES-CTR is a standard
    pseudorandom generator and runs at several GB/s with AES-NI (SHAKE-256 of the same bytes took about 7x as
    long here: bench/trees_walks.py)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = hashlib.sha256(_A_LABEL + seed).digest()
    out = np.empty((len(primes), n), dtype=np.uint64) if out is None else out
    for j, q in enumerate(primes):
        bits = q.bit_length()
        size = 4 if bits <= 32 else 8
        dtype = np.dtype("<u4" if size == 4 else "<u8")
        mask = np.uint64((1 << bits) - 1)
        stream = Cipher(algorithms.AES(key), modes.CTR((j << 64).to_bytes(16, "big"))).encryptor()
        buf = bytearray(n * size + 15)  # update_into wants a block's slack
        stream.update_into(_zeros(n * size), buf)
        row = out[j]
        np.bitwise_and(np.frombuffer(buf, dtype=dtype, count=n), mask, out=row, casting="unsafe")
        over = row >= np.uint64(q)
        if over.any():  # SEAL's primes lie just below 2^bits: rare, but the rule is the same on both sides
            kept = row[~over]
            while kept.size < n:
                more = np.frombuffer(stream.update(_zeros(64 * size)), dtype=dtype).astype(np.uint64) & mask
                kept = np.concatenate([kept, more[more < np.uint64(q)]])
            row[:] = kept[:n]
    return out


@lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    return bytes(size)


class SealContext:
    """The SEAL context of one `TreeParams`, its encoder and evaluator, and the header template of each level."""

    def __init__(self, params: TreeParams):
        params.validate()
        self.params = params
        n = params.poly_modulus_degree
        parms = seal.EncryptionParameters(seal.scheme_type.bgv)
        parms.set_poly_modulus_degree(n)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(n, list(params.coeff_modulus_bits)))
        parms.set_plain_modulus(params.plain_modulus)
        self.ctx = seal.SEALContext(parms, True, seal.sec_level_type.tc128)
        if not self.ctx.parameters_set():
            raise ValueError("SEAL rejected the parameters: " + self.ctx.parameter_error_message())
        self.n = n
        self.t = params.plain_modulus
        self.primes = params.data_primes
        self.evaluator = seal.Evaluator(self.ctx)
        self.encoder = seal.BatchEncoder(self.ctx)
        # parms_id of each level, keyed by its number of data primes
        self.parms_ids: dict[int, bytes] = {}
        self.parms_id_lists: dict[int, list[int]] = {}
        self._headers: dict[int, bytes] = {}
        kg = seal.KeyGenerator(self.ctx)
        ct = seal.Encryptor(self.ctx, kg.secret_key()).encrypt_symmetric(seal.Plaintext("1"))
        while True:
            k = ct.coeff_modulus_size()
            raw = ct.to_string()
            self._seal_magic = bytes(raw[:8])  # magic, header size, SEAL version, compression none
            self.parms_ids[k] = bytes(raw[16:48])
            self.parms_id_lists[k] = list(ct.parms_id())
            hdr = bytearray(raw[:CT_HEADER])
            struct.pack_into("<Q", hdr, _CF_OFF, 1)
            self._headers[k] = bytes(hdr)
            if k == params.out_primes:
                break
            self.evaluator.mod_switch_to_next_inplace(ct)
        self._check_header(self._headers[params.top_primes], params.top_primes)

    def _check_header(self, hdr: bytes, k: int) -> None:
        if hdr[:2] != b"\x5e\xa1":
            raise RuntimeError("unexpected SEAL serialisation header")
        size, n, nq = struct.unpack_from("<QQQ", hdr, 49)
        if (size, n, nq) != (2, self.n, k) or struct.unpack_from("<Q", hdr, 105)[0] != 2 * k * self.n:
            raise RuntimeError("unexpected SEAL ciphertext layout (SEAL version mismatch?)")

    def level_of(self, ct: seal.Ciphertext) -> int:
        """Number of data primes of a ciphertext."""
        return int(ct.coeff_modulus_size())

    def ct_buffer(self, k: int) -> tuple[bytearray, np.ndarray]:
        """The bytes of a size-2 NTT-form ciphertext at level k (header filled, correction factor 1) and a
        (2, k, n) view of its residues to fill in place; `ct_from_buffer` loads it."""
        buf = bytearray(CT_HEADER + 2 * k * self.n * 8)
        buf[:CT_HEADER] = self._headers[k]  # the template already states size 2 at level k
        return buf, np.frombuffer(buf, dtype=np.uint64, offset=CT_HEADER).reshape(2, k, self.n)

    def ct_from_buffer(self, buf: bytearray) -> seal.Ciphertext:
        ct = seal.Ciphertext()
        ct.load_bytes(self.ctx, bytes(buf))  # SEAL checks every residue against its prime
        return ct

    def ct_from_residues(self, c0: np.ndarray, c1: np.ndarray) -> seal.Ciphertext:
        """A size-2 NTT-form ciphertext at the level of c0/c1 (k, n) with correction factor 1."""
        buf, res = self.ct_buffer(c0.shape[0])
        res[0], res[1] = c0, c1
        return self.ct_from_buffer(buf)

    def residues(self, ct: seal.Ciphertext) -> np.ndarray:
        """(size, k, n) uint64 view of a ciphertext's residues."""
        raw = ct.to_string()
        return np.frombuffer(raw, dtype=np.uint64, offset=CT_HEADER).reshape(ct.size(), ct.coeff_modulus_size(), self.n)

    def ntt_plain(self, data: np.ndarray) -> seal.Plaintext:
        """An NTT-form plaintext at the level of ``data`` (k, n) (used to multiply by the secret key)."""
        k = data.shape[0]
        body = np.ascontiguousarray(data, dtype=np.uint64).tobytes()
        hdr = bytearray(_PT_HEADER)
        hdr[0:8] = self._seal_magic
        struct.pack_into("<Q", hdr, 8, _PT_HEADER + len(body))
        hdr[16:48] = self.parms_ids[k]
        struct.pack_into("<Qd", hdr, 48, k * self.n, 1.0)
        hdr[64:72] = self._seal_magic
        struct.pack_into("<QQ", hdr, 72, 24 + len(body), k * self.n)
        pt = seal.Plaintext()
        pt.load_bytes(self.ctx, bytes(hdr) + body)
        return pt


@lru_cache(maxsize=8)
def context_for(params: TreeParams) -> SealContext:
    return SealContext(params)
