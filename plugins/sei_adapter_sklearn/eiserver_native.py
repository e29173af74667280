"""EIServer's dot products, with public keys converted once instead of once per class.

`EIServer.predict` copies the 9 MB public keys into a ctypes array element by element for
every class (~0.9 s each). Here the keys are converted once per key id (a buffer copy) and
reused; the wire format and the native computation are exactly EIServer's.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from encrypted.inference.internal import einative

from sei_framework import InvalidRequest, KeyringError, run_script_isolated

from . import eiserver_probe as probe
from .eiserver_probe import NativeError, dot_product, result_size

__all__ = ["NativeKeys", "EIServerKernel", "SEAL_MAGIC", "check_ciphertext", "check_key_pair"]

SEAL_MAGIC = 0xA15E
KEY_PARTS = 2  # two SEAL key objects, as EILinearRegressionClient.get_public_keys makes them
_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, reserved, size
_NO_COMPRESSION, _ZLIB = 0, 1

# encrypted-inference 0.9's fixed CKKS parameters: N = 8192, primes of 60, 40, 40 (+ 60) bits, scale 2^40.
# SEAL names a parameter level by its parms_id, a hash of the parameters: these are the data level's
# (ciphertexts) and the key level's. tests/test_eiserver_checks.py derives both from a fresh client.
POLY_MODULUS_DEGREE, DATA_PRIMES, SCALE = 8192, 3, 2.0**40
DATA_PARMS_ID = bytes.fromhex("0f8bbf7d4509a0123c2bc9d4f3d564630c448ed8cc41a8965894081870675512")
KEY_PARMS_ID = bytes.fromhex("e2a8dd3f1586dacfac02a4591f26b3ba536e0b1f60e28faef57f030eab08c5dd")
# Ciphertext members: parms_id, is_ntt_form, size, poly_modulus_degree, coeff_modulus_size, scale;
# then its coefficients as a serialized array (SEAL header, count) and, when seeded, a 64-byte seed.
_CIPHERTEXT = struct.Struct("<32sBQQQd")
_SEED_BYTES = 64
_POLY_WORDS = POLY_MODULUS_DEGREE * DATA_PRIMES
_MAX_CIPHERTEXT = _CIPHERTEXT.size + _HEADER.size + 8 + 8 * 2 * _POLY_WORDS
_MAX_KEY_PART = 64 * 2**20


@dataclass(frozen=True)
class NativeKeys:
    """Public keys as the native library takes them."""

    array: ctypes.Array
    size: int


def _check_header(blob: bytes, what: str) -> None:
    """Cheap checks of a SEAL serialization header, before native code sees the bytes."""
    code = "invalid_keys" if what.startswith("public key") else "invalid_ciphertext"
    if len(blob) < _HEADER.size:
        raise InvalidRequest(f"{what} is truncated ({len(blob)} bytes)", code=code)
    magic, header_size, major, _minor, compression, _reserved, size = _HEADER.unpack_from(blob)
    if magic != SEAL_MAGIC or header_size != _HEADER.size or major != 3 or compression > 2:
        raise InvalidRequest(f"{what} is not a Microsoft SEAL 3 serialization", code=code)
    if size != len(blob):
        raise InvalidRequest(f"{what} is {len(blob)} bytes but its header says {size}", code=code)


def _members(blob: bytes, limit: int, what: str, code: str) -> bytes:
    """A SEAL object's members, inflated when zlib-compressed, never more than `limit` bytes."""
    compression = _HEADER.unpack_from(blob)[4]
    if compression == _NO_COMPRESSION:
        members = blob[_HEADER.size :]
    elif compression == _ZLIB:
        inflate = zlib.decompressobj()
        try:
            members = inflate.decompress(blob[_HEADER.size :], limit + 1)
        except zlib.error:
            raise InvalidRequest(f"{what} is not valid zlib data", code=code) from None
        if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
            raise InvalidRequest(f"{what} does not inflate to one SEAL object of at most {limit} bytes", code=code)
    else:
        raise InvalidRequest(f"{what} uses a compression EIServer's client does not (use none or zlib)", code=code)
    if len(members) > limit:
        raise InvalidRequest(f"{what} inflates to more than {limit} bytes", code=code)
    return members


def check_ciphertext(blob: bytes, what: str) -> None:
    """The ciphertext was made for the model's encryption parameters, and its length adds up."""
    _check_header(blob, what)
    members = _members(blob, _MAX_CIPHERTEXT + _SEED_BYTES, what, "invalid_ciphertext")
    if len(members) < _CIPHERTEXT.size + _HEADER.size + 8:
        raise InvalidRequest(f"{what} is truncated", code="invalid_ciphertext")
    parms_id, ntt, size, degree, primes, scale = _CIPHERTEXT.unpack_from(members)
    if (parms_id, ntt, size, degree, primes, scale) != (DATA_PARMS_ID, 1, 2, POLY_MODULUS_DEGREE, DATA_PRIMES, SCALE):
        raise InvalidRequest(
            f"{what} was not made for this model's encryption parameters (CKKS, N={POLY_MODULUS_DEGREE}, "
            f"{DATA_PRIMES} primes, scale 2^40); it says N={degree}, {primes} primes, {size} polynomials",
            code="wrong_parameters",
        )
    array = members[_CIPHERTEXT.size :]
    declared = _HEADER.unpack_from(array)[-1]
    _check_header(array[:declared], f"{what} coefficients")
    count = struct.unpack_from("<Q", array, _HEADER.size)[0]
    seed = {_POLY_WORDS: _SEED_BYTES, 2 * _POLY_WORDS: 0}.get(count)  # seeded: c1 travels as a seed
    if seed is None or declared != _HEADER.size + 8 + 8 * count or len(array) != declared + seed:
        raise InvalidRequest(f"{what} holds {count} coefficients in {len(array)} bytes", code="invalid_ciphertext")


def decode_ciphertexts(row: object, expected: int) -> bytes:
    """Base64 ciphertexts of one row, checked and concatenated as the native call takes them."""
    if not isinstance(row, list) or not all(isinstance(c, str) for c in row):
        raise InvalidRequest("each row must be a list of base64 ciphertext strings", code="invalid_ciphertext")
    if len(row) != expected:
        raise InvalidRequest(f"each row must have {expected} ciphertext(s), got {len(row)}", code="invalid_ciphertext")
    blobs = []
    for i, text in enumerate(row):
        try:
            blob = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"ciphertext {i} is not valid base64", code="invalid_ciphertext") from None
        check_ciphertext(blob, f"ciphertext {i}")
        blobs.append(blob)
    return b"".join(blobs)


class EIServerKernel:
    """The native EIServer computation for one weight matrix."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef = np.ascontiguousarray(coef, dtype=np.float64)
        self.intercept = np.ascontiguousarray(intercept, dtype=np.float64)
        self._server = einative.SEALServerInstance()
        slots = ctypes.c_uint64()
        einative._einative.GetServerSlotCount(self._server.native_ptr, ctypes.byref(slots))
        self.ciphertexts_per_row = -(-self.coef.shape[1] // slots.value)
        self._result_size = result_size(self._server, self.ciphertexts_per_row)

    @staticmethod
    def convert_keys(public_keys: bytes) -> NativeKeys:
        """Check that the keys are the two SEAL objects EIServer expects, then convert them."""
        offset, parts = 0, 0
        while offset < len(public_keys):
            part = public_keys[offset:]
            if len(part) >= _HEADER.size:
                part = part[: _HEADER.unpack_from(part)[-1]]
            _check_header(part, f"public key part {parts}")
            members = _members(part, _MAX_KEY_PART, f"public key part {parts}", "invalid_keys")
            if members[:32] != KEY_PARMS_ID:
                raise InvalidRequest(
                    f"public key part {parts} was not made for this model's encryption parameters", code="wrong_parameters"
                )
            offset, parts = offset + len(part), parts + 1
        if parts != KEY_PARTS:
            raise InvalidRequest(f"public keys must hold {KEY_PARTS} SEAL objects, not {parts}", code="invalid_keys")
        return NativeKeys((ctypes.c_byte * len(public_keys)).from_buffer_copy(public_keys), len(public_keys))

    def dot_products(self, ciphertexts: bytes, keys: NativeKeys) -> list[str]:
        """One base64 result ciphertext per output, as EIServer.predict returns them."""
        cipher_array = (ctypes.c_byte * len(ciphertexts)).from_buffer_copy(ciphertexts)
        try:
            return [
                base64.b64encode(dot_product(self._server, weights, intercept, cipher_array, keys.array, self._result_size)).decode("ascii")
                for weights, intercept in zip(self.coef, self.intercept, strict=True)
            ]
        except NativeError as exc:
            raise InvalidRequest(str(exc), code="rejected_input") from None


_PROBE_TOLERANCE = 1e-3


def check_key_pair(secret: bytes, public_keys: bytes) -> None:
    """Raise KeyringError unless `public_keys` were made from the EIServer `secret` key.

    The secret key is a 64-byte seed SEAL 3.5 expands natively, so the check is a round trip: the
    service's own dot product, with these keys, on a one-feature model, must decrypt to the right
    value (another secret's Galois keys give a number near 2^64). It runs in a fresh interpreter
    (see eiserver_probe), about 0.6 s; the relinearisation keys are not used by the dot product, nor checked."""
    try:
        EIServerKernel.convert_keys(public_keys)
    except InvalidRequest as exc:
        raise KeyringError(f"the public keys are damaged: {exc.message}") from None
    try:
        output = run_script_isolated(probe.__file__, secret + public_keys, what="checking the key pair", timeout=120)
    except InvalidRequest as exc:
        if exc.code == "timeout":  # a busy machine, not a verdict on the keys
            raise
        raise KeyringError("the public keys are damaged: the native library rejected them") from None
    if not abs(probe.read_value(output) - (probe.PROBE_X * probe.PROBE_W + probe.PROBE_B)) < _PROBE_TOLERANCE:
        raise KeyringError("the public keys were not made from this secret key")
