"""The seed expansion both sides of the tree engine share (`expand_a`, AES-256-CTR): the rule written out once more
here from its description, a known answer that pins the wire format, and the rejection path SEAL's primes rarely
take."""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sei_adapter_trees.engine import params
from sei_adapter_trees.engine.seal_context import expand_a

SEED = bytes(range(32))


def _by_the_rule(seed: bytes, primes: tuple[int, ...], n: int) -> np.ndarray:
    """Prime j: the keystream of AES-256 key SHA-256(label | seed) from counter block j << 64, read as little-endian
    words (4 bytes up to 32-bit primes, else 8), each masked to the prime's bit length, the first n below it."""
    key = hashlib.sha256(b"SEI-trees-a/aes256ctr" + seed).digest()
    rows = []
    for j, q in enumerate(primes):
        size = 4 if q.bit_length() <= 32 else 8
        stream = Cipher(algorithms.AES(key), modes.CTR((j << 64).to_bytes(16, "big"))).encryptor()
        kept: list[int] = []
        while len(kept) < n:
            word = int.from_bytes(stream.update(bytes(size)), "little") & ((1 << q.bit_length()) - 1)
            if word < q:
                kept.append(word)
        rows.append(kept)
    return np.array(rows, dtype=np.uint64)


def test_expansion_follows_its_rule_and_a_known_answer() -> None:
    primes = params._primes(8192, (50, 30, 60))[:-1]  # an 8-byte and a 4-byte word size
    got = expand_a(SEED, primes, 8192)
    assert np.array_equal(got[:, :512], _by_the_rule(SEED, primes, 512))
    # the wire format: a client and a service of this message version expand a seed to exactly these residues
    assert hashlib.sha256(got.astype("<u8").tobytes()).hexdigest() == (
        "a0f4b9123eee36934bee167109b296c4069fa2aea1aafcd3ae7be7ae39d11edf")
    assert np.array_equal(expand_a(SEED, primes, 8192), got)
    assert not np.array_equal(expand_a(bytes(32), primes, 8192), got)


def test_rejected_words_are_replaced_from_the_same_stream() -> None:
    """A modulus just above a power of two rejects about half the words (SEAL's primes, just below one: almost
    none). The rule only bounds by the modulus, so any will do."""
    primes = (257, 131073)  # 9 bits: 257 of 512 words kept; 18 bits: 131,073 of 262,144
    got = expand_a(SEED, primes, 1024)
    assert (got < np.array(primes, dtype=np.uint64)[:, None]).all()
    assert np.array_equal(got, _by_the_rule(SEED, primes, 1024))
    counts = np.bincount(got[0].astype(np.int64), minlength=257)
    assert counts.max() <= 20 and (counts > 0).sum() > 240  # about 4 per value, every value reachable
