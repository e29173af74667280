"""A client checks that the secret key it loads belongs to the public key (and so the key id) it sends:
a mismatched pair would decrypt the service's answers to wrong numbers, so it is refused instead."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import yaml
from conftest import with_bounds

from sei_framework import Deployment, KeyringError
from sei_framework.keys import Keyring
from sei_framework.serving import ScoringService


@pytest.fixture(scope="module")
def descriptions(tmp_path_factory, model_files):
    """What the service tells clients about the diabetes model on each adapter."""
    folder = tmp_path_factory.mktemp("pairs")
    path = str(model_files["diabetes"][0])
    config = {
        "name": "pairs",
        "models": [
            with_bounds({"name": "eiserver", "adapter": "sklearn-eiserver", "path": path}),
            with_bounds({"name": "single", "adapter": "sklearn-packed", "path": path}),
            with_bounds({"name": "bulk", "adapter": "sklearn-packed", "path": path, "options": {"mode": "bulk"}}),
        ],
    }
    (folder / "pairs.yaml").write_text(yaml.safe_dump(config))
    service = ScoringService.from_build(Deployment.from_file(folder / "pairs.yaml").build(folder / "build").path)
    return service, service.describe()["models"]


def client_for(descriptions, name):
    service, models = descriptions
    return service.adapters[name].client(models[name])


@pytest.fixture(scope="module")
def eiserver_pairs(descriptions):
    client = client_for(descriptions, "eiserver")
    return client.generate_keys(), client.generate_keys()


def refused(client, secret: bytes, public: bytes, match: str) -> None:
    """use_keys refuses the pair with a short message that carries no key bytes."""
    with pytest.raises((KeyringError, ValueError), match=match) as info:
        client.use_keys(secret, public)
    message = str(info.value)
    assert len(message) < 200
    for blob in (secret, public):
        for chunk in (blob[-16:], blob[64:80]) if len(blob) >= 80 else ():
            assert chunk.hex() not in message and base64.b64encode(chunk).decode()[:12] not in message


# --- sklearn-packed: pk0 + a*s must be small noise in every prime ----------------------------------


@pytest.mark.parametrize("name", ["single", "bulk"])
def test_packed_a_generated_pair_is_accepted_and_works(descriptions, name, model_files, tmp_path):
    client = client_for(descriptions, name)
    keyring = Keyring(tmp_path / "keys")
    keyring.save(client.key_scheme, *client.generate_keys())
    fresh = client_for(descriptions, name)  # a later session: the stored pair is read back and checked
    fresh.use_keys(*keyring.load(client.key_scheme))
    X = model_files["diabetes"][2][:2]
    assert fresh.encrypt(X)["n_rows"] == 2


@pytest.mark.parametrize("name", ["single", "bulk"])
def test_packed_another_secrets_public_key_is_refused(descriptions, name):
    client = client_for(descriptions, name)
    (secret, public), (other_secret, other_public) = client.generate_keys(), client.generate_keys()
    refused(client, secret, other_public, "not the one stored with the secret key")
    # the secret's record of its public key swapped too: only the algebra can tell
    assert secret.endswith(public)
    refused(client, secret[: -len(public)] + other_public, other_public, "not made from this secret key")
    client.use_keys(secret, public)
    client.use_keys(other_secret, other_public)


def test_packed_a_public_key_damaged_in_the_special_prime_only_is_refused(descriptions):
    """The last (key-level) prime never reaches the data level, yet SEAL encrypts with it."""
    client = client_for(descriptions, "single")
    secret, public = client.generate_keys()
    words = np.frombuffer(public, dtype="<u4", offset=24 + 32).copy()
    n = client.params.poly_modulus_degree
    words[-n + 7] = (int(words[-n + 7]) + 1) % client.params.key_primes[-1]
    damaged = public[: 24 + 32] + words.tobytes()
    refused(client, secret[: -len(public)] + damaged, damaged, "not made from this secret key")


def test_packed_truncated_garbage_or_foreign_public_keys_are_refused(descriptions):
    single, bulk = client_for(descriptions, "single"), client_for(descriptions, "bulk")
    secret, public = single.generate_keys()
    refused(single, secret, public[:-4], "not the one stored|size")
    refused(single, secret, b"", "too short")
    refused(single, secret, b"SEIP" + bytes(200), "magic|version|kind|fingerprint")
    refused(single, secret, np.random.default_rng(0).bytes(len(public)), "magic")
    bulk_secret, bulk_public = bulk.generate_keys()
    refused(single, bulk_secret, bulk_public, "other encryption parameters")  # a pair for the other model
    refused(single, secret[: -len(public)] + bulk_public, bulk_public, "fingerprint")


def test_packed_check_costs_milliseconds(descriptions):
    import time

    client = client_for(descriptions, "single")
    pair = client.generate_keys()
    client.use_keys(*pair)
    start = time.perf_counter()
    client.use_keys(*pair)
    assert time.perf_counter() - start < 0.5


# --- sklearn-eiserver: a one-feature dot product through the native library must decrypt right ------


def test_eiserver_a_generated_pair_is_accepted_and_works(descriptions, eiserver_pairs, model_files, tmp_path):
    (secret, public), _ = eiserver_pairs
    client = client_for(descriptions, "eiserver")
    keyring = Keyring(tmp_path / "keys")
    keyring.save(client.key_scheme, secret, public)
    client.use_keys(*keyring.load(client.key_scheme))
    service, _ = descriptions
    from sei_transport_inline import InlineTransport

    from sei_framework import key_id_for

    X = model_files["diabetes"][2][:1]
    body = {"model": "eiserver", "key_id": key_id_for(public), "data": client.encrypt(X)}
    body.update(InlineTransport(InlineTransport.Options()).publish(body["key_id"], public))
    answer, status = service.handle(json.dumps(body))
    assert status == 200, answer
    expected = model_files["diabetes"][1].predict(X)
    np.testing.assert_allclose(client.decrypt(answer["result"], 1)[:, 0], expected, atol=1e-3)


def test_eiserver_another_secrets_public_keys_are_refused(descriptions, eiserver_pairs):
    (secret, public), (other_secret, other_public) = eiserver_pairs
    client = client_for(descriptions, "eiserver")
    refused(client, secret, other_public, "not made from this secret key")
    refused(client, other_secret, public, "not made from this secret key")
    # Galois keys of one pair with the relinearisation keys of the other: the Galois keys decide
    galois, other_galois = (int.from_bytes(blob[8:16], "little") for blob in (public, other_public))
    refused(client, secret, other_public[:other_galois] + public[galois:], "not made from this secret key")


def test_eiserver_truncated_or_garbage_public_keys_are_refused(descriptions, eiserver_pairs):
    (secret, public), _ = eiserver_pairs
    client = client_for(descriptions, "eiserver")
    refused(client, secret, public[:-100], "damaged")
    refused(client, secret, public[: len(public) // 2], "damaged")
    refused(client, secret, b"", "damaged")
    refused(client, secret, np.random.default_rng(0).bytes(4096), "damaged")
    refused(client, secret[:32], public, "64 bytes")


def test_eiserver_pairs_are_checked_safely_while_other_threads_use_the_native_library(
    descriptions, eiserver_pairs, monkeypatch
):
    """encrypted-inference's ctypes calls release the GIL, so other threads may hold the library's
    locks at any moment; a check in a forked child then waited on them forever (a CI run: two
    clients' checks hit the 240 s timeout). The check must not fork, and must answer under load."""
    import os
    import threading

    from encrypted.inference.eiclient import EILinearRegressionClient

    def no_fork():
        raise AssertionError("the client forked while other threads use the native library")

    monkeypatch.setattr(os, "fork", no_fork)
    (secret, public), (other_secret, other_public) = eiserver_pairs
    stop, busy_rounds = threading.Event(), []

    def encrypt_until_stopped():
        busy = EILinearRegressionClient(verbose=False)
        while not stop.is_set():
            busy.encrypt(np.random.default_rng().random(30))
            busy_rounds.append(1)

    busy_threads = [threading.Thread(target=encrypt_until_stopped, daemon=True) for _ in range(3)]
    for thread in busy_threads:
        thread.start()
    outcomes: list[str] = []

    def check(pair_secret, pair_public, rounds=3):
        for _ in range(rounds):
            try:
                client_for(descriptions, "eiserver").use_keys(pair_secret, pair_public)
                outcomes.append("accepted")
            except KeyringError as exc:
                outcomes.append(f"refused: {exc}")

    checkers = [
        threading.Thread(target=check, args=(secret, public)),
        threading.Thread(target=check, args=(other_secret, other_public)),
        threading.Thread(target=check, args=(secret, other_public, 1)),
    ]
    try:
        for thread in checkers:
            thread.start()
        for thread in checkers:
            thread.join(timeout=120)
    finally:
        stop.set()
    assert not any(thread.is_alive() for thread in checkers)
    assert len(busy_rounds) > 0  # the library really was busy in other threads meanwhile
    assert sorted(outcomes) == ["accepted"] * 6 + ["refused: the public keys were not made from this secret key"]
