"""EIServer inputs are checked against the model's encryption parameters before native code sees them."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import pytest

from sei_adapter_sklearn.eiserver_native import (
    DATA_PARMS_ID,
    KEY_PARMS_ID,
    EIServerKernel,
    check_ciphertext,
)
from sei_framework import InvalidRequest

HEADER = struct.Struct("<HBBBBHQ")


@pytest.fixture(scope="module")
def fresh():
    """A ciphertext and public keys from the tutorial's own client."""
    from encrypted.inference.eiclient import EILinearRegressionClient

    client = EILinearRegressionClient(verbose=False)
    _, public = client.get_public_keys()
    return base64.b64decode(client.encrypt(np.linspace(0, 1, 10))[0]), public


def seal_object(members: bytes, compression: int) -> bytes:
    """A SEAL 3 serialization of `members`, zlib-compressed (1) or not (0)."""
    body = zlib.compress(members) if compression else members
    return HEADER.pack(0xA15E, HEADER.size, 3, 5, compression, 0, HEADER.size + len(body)) + body


def members_of(blob: bytes) -> bytes:
    return zlib.decompress(blob[HEADER.size :])


def key_parts(public: bytes) -> list[bytes]:
    first = HEADER.unpack_from(public)[-1]
    return [public[:first], public[first:]]


def test_the_parameter_ids_are_those_of_the_tutorials_client(fresh):
    ciphertext, public = fresh
    assert members_of(ciphertext)[:32] == DATA_PARMS_ID
    assert [members_of(part)[:32] for part in key_parts(public)] == [KEY_PARMS_ID, KEY_PARMS_ID]
    check_ciphertext(ciphertext, "ciphertext")
    check_ciphertext(seal_object(members_of(ciphertext), 0), "uncompressed ciphertext")
    assert EIServerKernel.convert_keys(public).size == len(public)


def test_a_ciphertext_for_other_parameters_is_refused_by_name(fresh):
    members = bytearray(members_of(fresh[0]))
    struct.pack_into("<Q", members, 41, 4096)  # poly_modulus_degree
    with pytest.raises(InvalidRequest, match="not made for this model's encryption parameters.*N=4096") as info:
        check_ciphertext(seal_object(bytes(members), 1), "ciphertext 0")
    assert info.value.code == "wrong_parameters"
    members = bytearray(members_of(fresh[0]))
    members[0] ^= 1  # another parameter set's parms_id
    with pytest.raises(InvalidRequest, match="not made for this model's encryption parameters"):
        check_ciphertext(seal_object(bytes(members), 0), "ciphertext 0")


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m[:-1],  # one byte short
        lambda m: m + b"\0" * 8,  # a word too many
        lambda m: m[:-64],  # a seeded ciphertext without its seed
        lambda m: m + bytes(8 << 20),  # inflates to megabytes
    ],
    ids=["short", "long", "no-seed", "bomb"],
)
def test_a_ciphertext_whose_length_does_not_add_up_is_refused(fresh, damage):
    with pytest.raises(InvalidRequest) as info:
        check_ciphertext(seal_object(damage(members_of(fresh[0])), 1), "ciphertext 0")
    assert info.value.code == "invalid_ciphertext"


def test_keys_for_other_parameters_or_not_zlib_are_refused(fresh):
    first, second = key_parts(fresh[1])
    other = bytearray(members_of(first))
    other[0] ^= 1
    with pytest.raises(InvalidRequest, match="public key part 0 was not made for this model") as info:
        EIServerKernel.convert_keys(seal_object(bytes(other), 1) + second)
    assert info.value.code == "wrong_parameters"
    broken = first[:HEADER.size] + b"\0" * (len(first) - HEADER.size)
    with pytest.raises(InvalidRequest, match="public key part 0 is not valid zlib data"):
        EIServerKernel.convert_keys(broken + second)
