"""The client keyring: one pair per scheme for any number of concurrent first users, checked on load."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import queue
import stat
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import with_bounds

from sei_framework import Client, Deployment, KeyringError, key_id_for
from sei_framework.keys import PAIR_FILE, Keyring
from sei_framework.serving import ScoringService

PROCESSES = 12
THREADS = 8
NOWHERE = "http://127.0.0.1:9/score"  # never called: the clients get the description directly


@pytest.fixture(scope="module")
def packed(tmp_path_factory, model_files):
    """An in-process sklearn-packed service of the diabetes model, its description and test rows."""
    folder = tmp_path_factory.mktemp("keyring-packed")
    model = with_bounds({"name": "m", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])})
    config = {"name": "keyring", "models": [model]}
    (folder / "packed.yaml").write_text(yaml.safe_dump(config))
    service = ScoringService.from_build(Deployment.from_file(folder / "packed.yaml").build(folder / "build").path)
    _, model, X = model_files["diabetes"]
    return service, service.describe()["models"]["m"], model, X[:3]


def first_use(folder: str, description: dict, rows: list, barrier, results) -> None:
    """One user's first prediction setup: a Client takes its keys from an empty keyring at once
    with every other user, then encrypts `rows`; reports its key id and ciphertexts, or its error."""
    try:
        client = Client(NOWHERE, keyring=Keyring(Path(folder)))
        client._description = {"models": {"m": description}}
        client.plugins.model_adapters()  # plugins loaded before the race, so the race is the keyring
        barrier.wait(timeout=120)
        session = client.session("m")
        results.put({"key_id": session.key_id, "data": session.adapter.encrypt(np.asarray(rows))})
    except BaseException as exc:  # noqa: BLE001 - every failure is a result the test reports
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def assert_one_working_pair(packed, folder: Path, results: list[dict]) -> None:
    """Every user got the stored pair, its key id is stored with it, and it scores like plaintext."""
    service, description, model, rows = packed
    assert [r for r in results if "error" in r] == []
    key_ids = {r["key_id"] for r in results}
    scheme = service.adapters["m"].client(description).key_scheme
    secret, public = Keyring(folder).load(scheme)
    assert key_ids == {key_id_for(public)}
    header = (Keyring(folder).folder_for(scheme) / PAIR_FILE).read_bytes().split(b"\n")[1]
    assert json.loads(header)["key_id"] == key_id_for(public)
    reader = service.adapters["m"].client(description)
    reader.use_keys(secret, public)
    publish = {"public_keys": base64.b64encode(public).decode()}
    for result in results:  # each user's ciphertexts: scored with the stored public key, decrypted with the stored secret
        body = {"model": "m", "key_id": result["key_id"], "data": result["data"], **publish}
        answer, status = service.handle(json.dumps(body))
        assert status == 200, answer
        np.testing.assert_allclose(reader.decrypt(answer["result"], len(rows))[:, 0], model.predict(rows), atol=1e-3)


def test_many_processes_first_use_one_keyring_at_once(packed, tmp_path):
    _, description, _, rows = packed
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    folder = tmp_path / "keys"
    workers = [
        context.Process(target=first_use, args=(str(folder), description, rows.tolist(), barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=300) for _ in workers]  # drained before join, so no worker blocks on a full pipe
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    assert_one_working_pair(packed, folder, answers)


def test_many_threads_first_use_one_keyring_at_once(packed, tmp_path):
    _, description, _, rows = packed
    barrier, results = threading.Barrier(THREADS), queue.Queue()
    folder = tmp_path / "keys"
    threads = [
        threading.Thread(target=first_use, args=(str(folder), description, rows.tolist(), barrier, results))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert_one_working_pair(packed, folder, [results.get_nowait() for _ in threads])


def test_generate_runs_once_and_the_files_are_private(tmp_path):
    calls = []

    def generate():
        calls.append(1)
        return b"secret-%d" % len(calls), b"public"

    keyring = Keyring(tmp_path / "home" / "keys")
    pairs = {keyring.load_or_create("packed-x", generate) for _ in range(3)}
    assert pairs == {(b"secret-1", b"public")} and len(calls) == 1
    assert Keyring(tmp_path / "home" / "keys").load("packed-x") == (b"secret-1", b"public")
    scheme_dir = keyring.folder_for("packed-x")
    if os.name == "posix":
        assert stat.S_IMODE((scheme_dir / PAIR_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE(scheme_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(keyring.folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in scheme_dir.iterdir()) == [".lock", PAIR_FILE]  # no temp files left behind


def test_a_stored_public_key_swapped_for_another_is_refused(packed, tmp_path):
    service, description, _, _ = packed
    client = service.adapters["m"].client(description)
    keyring = Keyring(tmp_path / "keys")
    secret, public = keyring.load_or_create(client.key_scheme, client.generate_keys)
    other_public = client.generate_keys()[1]
    path = keyring.folder_for(client.key_scheme) / PAIR_FILE
    path.write_bytes(path.read_bytes().replace(public, other_public))

    for use in (
        lambda: keyring.load(client.key_scheme),
        lambda: keyring.load_or_create(client.key_scheme, client.generate_keys),
        lambda: with_description(Client(NOWHERE, keyring=keyring), description).session("m"),
    ):
        with pytest.raises(KeyringError) as caught:
            use()
        message = str(caught.value)
        assert client.key_scheme in message and str(keyring.folder_for(client.key_scheme)) in message
        assert "move that folder away" in message and "b'" not in message and len(message) < 400
    assert public not in path.read_bytes() and other_public in path.read_bytes()  # refused, never overwritten


def test_a_pair_whose_secret_key_belongs_to_other_public_keys_is_refused(packed, tmp_path):
    """The key id matches the stored public key, but the secret key is another pair's: the adapter
    client's use_keys refuses it, so the client raises KeyringError instead of decrypting garbage."""
    service, description, _, _ = packed
    client = service.adapters["m"].client(description)
    secret, _ = client.generate_keys()
    _, other_public = client.generate_keys()
    keyring = Keyring(tmp_path / "keys")
    keyring.save(client.key_scheme, secret, other_public)
    with pytest.raises(KeyringError, match="cannot be used .*move that scheme's folder"):
        with_description(Client(NOWHERE, keyring=keyring), description).session("m")


def test_keys_stored_by_earlier_versions_still_load_and_work(packed, tmp_path):
    service, description, model, rows = packed
    client = service.adapters["m"].client(description)
    secret, public = client.generate_keys()
    keyring = Keyring(tmp_path / "keys")
    legacy = keyring.folder_for(client.key_scheme)
    legacy.mkdir(parents=True)
    (legacy / "secret.key").write_bytes(secret)
    (legacy / "public.key").write_bytes(public)

    assert keyring.load_or_create(client.key_scheme, pytest.fail) == (secret, public)
    session = with_description(Client(NOWHERE, keyring=keyring), description).session("m")
    assert session.key_id == key_id_for(public)
    assert_scores_like_plaintext(service, session, public, model, rows)

    (legacy / "public.key").write_bytes(client.generate_keys()[1])  # another pair's public key
    with pytest.raises(KeyringError, match="cannot be used"):
        with_description(Client(NOWHERE, keyring=keyring), description).session("m")


def assert_scores_like_plaintext(service, session, public, model, rows) -> None:
    body = {"model": "m", "key_id": session.key_id, "data": session.adapter.encrypt(rows)}
    answer, status = service.handle(json.dumps({**body, "public_keys": base64.b64encode(public).decode()}))
    assert status == 200, answer
    scores = session.adapter.decrypt(answer["result"], len(rows))
    np.testing.assert_allclose(scores[:, 0], model.predict(rows), atol=1e-3)


def with_description(client: Client, description: dict) -> Client:
    client._description = {"models": {"m": description}}
    return client
