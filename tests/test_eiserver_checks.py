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


def test_native_failures_answer_a_fixed_message_and_log_the_detail(caplog):
    """What a native library prints or raises in the isolated child goes to the service log, not the answer."""
    import logging
    import os

    from sei_framework import call_isolated

    def noisy_abort():
        os.write(2, b"terminate called after throwing an instance of 'std::invalid_argument'\n")
        os.write(2, b"  what():  SEAL internal detail 0x5ea1\n")
        os.abort()

    def noisy_error():
        raise RuntimeError("ciphertext bytes 3q2+7w== rejected by SEAL")

    caplog.set_level(logging.INFO, logger="sei_framework.isolation")
    with pytest.raises(InvalidRequest) as info:
        call_isolated(noisy_abort, what="dot product")
    assert info.value.code == "rejected_input"
    crashed = "dot product failed: the native library rejected the input and crashed (killed by SIGABRT)"
    assert info.value.message == crashed
    with pytest.raises(InvalidRequest) as info:
        call_isolated(noisy_error, what="dot product")
    assert info.value.message == "dot product failed: the native library rejected the input"
    assert "SEAL internal detail 0x5ea1" in caplog.text and "RuntimeError" in caplog.text  # for the operator
    assert "SEAL internal detail" not in info.value.message and "3q2+7w==" not in info.value.message

    def our_refusal():
        raise InvalidRequest("ciphertext 0 holds 3 coefficients", code="invalid_ciphertext")

    with pytest.raises(InvalidRequest, match="^ciphertext 0 holds 3 coefficients$") as info:
        call_isolated(our_refusal, what="dot product")  # a refusal of our own keeps its code and message
    assert info.value.code == "invalid_ciphertext"


def test_a_ciphertext_only_seal_refuses_gets_no_seal_text_in_the_answer(fresh):
    """Well formed for the parameters, every coefficient above its prime: SEAL refuses it in the child."""
    ciphertext, public = fresh
    members = bytearray(members_of(ciphertext))
    members[-64 - 8 * 24576 : -64] = b"\xff" * (8 * 24576)
    blob = seal_object(bytes(members), 1)
    check_ciphertext(blob, "ciphertext 0")  # our checks pass: only SEAL can tell
    kernel = EIServerKernel(np.ones((1, 10)), np.zeros(1))
    keys = kernel.convert_keys(public)
    from sei_framework import call_isolated

    with pytest.raises(InvalidRequest) as info:
        call_isolated(lambda: kernel.dot_products(blob, keys), what="encrypted dot product")
    assert info.value.code == "rejected_input"
    assert info.value.message.startswith("encrypted dot product failed: the native library rejected the input")
