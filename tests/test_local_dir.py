"""The `local-dir` key transport reads only regular files, never blocks, never reads past its limit,
and its client republishes keys that are not its own (checked by content hash, not by size)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import tracemalloc
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from conftest import keyed_request

from sei_framework import InvalidRequest, KeyTransportError, key_id_for
from sei_framework.serving import ScoringService
from sei_transport_local_dir import LocalDirTransport

VICTIM = key_id_for(b"the victim's public keys")
OTHER = "b" * 32
GB = 2**30


def transport(folder: Path, **options) -> LocalDirTransport:
    return LocalDirTransport(LocalDirTransport.Options(path=folder, **options))


def promptly(call, seconds: float = 5.0, unblock=lambda: None):
    """call(), failing the test (instead of hanging it) if it has not returned after `seconds`."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        unblock()
        worker.join(seconds)
        pytest.fail(f"did not return within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def fifo_at(path: Path):
    """Make a FIFO at `path`; return what lets a reader blocked on it go (open and close a writer)."""
    os.mkfifo(path)

    def unblock() -> None:
        with suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    return unblock


def test_fetch_refuses_a_fifo_at_once(tmp_path):
    unblock = fifo_at(tmp_path / f"{OTHER}.keys")
    with pytest.raises(KeyTransportError, match=f"key file for key id {OTHER} is a FIFO") as info:
        promptly(lambda: transport(tmp_path).fetch(OTHER, {}), unblock=unblock)
    assert info.value.code == "bad_key_file" and str(tmp_path) not in info.value.message


@pytest.mark.parametrize("kind", ["/dev/zero", "outside file", "dangling"])
def test_fetch_never_follows_a_symlink(tmp_path, kind):
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"not a key file the service should read")
    target = {"/dev/zero": "/dev/zero", "outside file": str(outside), "dangling": str(tmp_path / "nothing")}[kind]
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / f"{OTHER}.keys").symlink_to(target)
    with pytest.raises(KeyTransportError, match="is a symbolic link, not a regular file") as info:
        promptly(lambda: transport(folder).fetch(OTHER, {}))
    assert info.value.code == "bad_key_file"


def test_fetch_refuses_a_directory(tmp_path):
    (tmp_path / f"{OTHER}.keys").mkdir()
    with pytest.raises(KeyTransportError, match="is a directory, not a regular file"):
        transport(tmp_path).fetch(OTHER, {})


def test_fetch_refuses_a_file_over_the_limit_without_reading_it(tmp_path):
    with open(tmp_path / f"{OTHER}.keys", "wb") as handle:
        handle.truncate(GB)  # sparse: 1 GB that costs no disk
    tracemalloc.start()
    try:
        started = time.monotonic()
        with pytest.raises(InvalidRequest, match=f"is {GB} bytes; this service reads at most {32 * 2**20}") as info:
            promptly(lambda: transport(tmp_path).fetch(OTHER, {}))
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "keys_too_large" and info.value.status == 400
    assert elapsed < 1.0 and peak < 2**20, (elapsed, peak)


def test_fetch_reads_at_most_the_limit_of_a_file_that_grows(tmp_path, monkeypatch):
    """The size fstat reports is not trusted: the read itself stops one byte past the limit."""
    (tmp_path / f"{OTHER}.keys").write_bytes(b"x" * 5000)
    real_fstat, real_read, asked = os.fstat, os.read, []

    def small_fstat(fd):
        info = real_fstat(fd)
        return os.stat_result((info.st_mode, *info[1:6], 10, *info[7:10]))

    def counting_read(fd, n):
        asked.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "fstat", small_fstat)
    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(InvalidRequest, match="is more than 100 bytes; this service reads at most 100"):
        transport(tmp_path).fetch(OTHER, {}, max_bytes=100)
    assert sum(asked) == 101


def test_fetch_limit_is_the_option_or_a_smaller_max_bytes(tmp_path):
    (tmp_path / f"{OTHER}.keys").write_bytes(b"x" * 3000)
    assert transport(tmp_path, max_key_mb=0.01).fetch(OTHER, {}) == b"x" * 3000
    with pytest.raises(InvalidRequest, match="reads at most 2048"):
        transport(tmp_path, max_key_mb=0.01).fetch(OTHER, {}, max_bytes=2048)
    with pytest.raises(InvalidRequest, match="reads at most 1048"):
        transport(tmp_path, max_key_mb=0.001).fetch(OTHER, {}, max_bytes=2048)
    with pytest.raises(InvalidRequest, match="reads at most 2000"):
        transport(tmp_path).fetch_at_most(OTHER, {}, 2000)
    assert transport(tmp_path).fetch("c" * 32, {}) is None


def test_publish_replaces_a_same_size_file_that_is_not_ours(tmp_path):
    keys = b"the victim's public keys"
    target = tmp_path / f"{VICTIM}.keys"
    target.write_bytes(b"X" * len(keys))  # an attacker's bytes, of the right size
    transport(tmp_path).publish(VICTIM, keys)
    assert target.read_bytes() == keys
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the service may run as another user
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file left


def test_publish_keeps_a_file_that_hashes_to_the_key_id(tmp_path):
    keys = b"the victim's public keys"
    target = tmp_path / f"{VICTIM}.keys"
    target.write_bytes(keys)
    before = target.stat()
    transport(tmp_path).publish(VICTIM, keys)
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("kind", ["symlink to our keys", "symlink to another file", "fifo", "longer file"])
def test_publish_replaces_what_is_not_a_regular_file_of_our_keys(tmp_path, kind):
    keys = b"the victim's public keys"
    folder = tmp_path / "keys"
    folder.mkdir()
    target = folder / f"{VICTIM}.keys"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(keys if kind == "symlink to our keys" else b"someone else's file")
    unblock = lambda: None  # noqa: E731
    if kind.startswith("symlink"):
        target.symlink_to(elsewhere)
    elif kind == "fifo":
        unblock = fifo_at(target)
    else:
        target.write_bytes(keys + b"trailing")
    promptly(lambda: transport(folder).publish(VICTIM, keys), unblock=unblock)
    assert not target.is_symlink() and stat.S_ISREG(target.lstat().st_mode) and target.read_bytes() == keys
    assert elsewhere.read_bytes() in (keys, b"someone else's file")  # a link's target is never written
    assert sorted(p.name for p in folder.iterdir()) == [target.name]


def test_publish_says_what_is_wrong_when_it_cannot_replace(tmp_path):
    (tmp_path / f"{VICTIM}.keys").mkdir()
    with pytest.raises(KeyTransportError, match=f"cannot write public keys to .*{VICTIM}.keys"):
        transport(tmp_path).publish(VICTIM, b"the victim's public keys")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{VICTIM}.keys"]


def test_service_answers_bad_key_files_with_an_error_and_keeps_serving(make_deployment, model_files, tmp_path):
    folder = tmp_path / "shared-keys"
    deployment = make_deployment(
        models=("diabetes",), transport={"name": "local-dir", "options": {"path": str(folder)}}
    )
    service = ScoringService.from_build(deployment.build(tmp_path / "build").path)
    _, model, X = model_files["diabetes"]
    client, body, _, public = keyed_request(service, "diabetes", X[:1])
    transport(folder).publish(body["key_id"], public)

    unblock = fifo_at(folder / f"{'f' * 32}.keys")
    (folder / f"{'s' * 32}.keys").symlink_to("/dev/zero")
    (folder / f"{'d' * 32}.keys").mkdir()
    with open(folder / f"{'g' * 32}.keys", "wb") as handle:
        handle.truncate(GB)
    expected = {"f": (502, "bad_key_file"), "s": (502, "bad_key_file"), "d": (502, "bad_key_file")}
    expected["g"] = (400, "keys_too_large")
    for letter, (status, code) in expected.items():
        request = json.dumps({**body, "key_id": letter * 32})
        answer, got = promptly(lambda request=request: service.handle(request), unblock=unblock)
        assert (got, answer["error"]["code"]) == (status, code), answer
        assert str(folder) not in answer["error"]["message"]

    answer, status = service.handle(json.dumps(body))
    assert status == 200, answer
    np.testing.assert_allclose(client.decrypt(answer["result"], 1)[:, 0], model.predict(X[:1]), atol=1e-3)


def test_without_its_own_option_the_service_limit_is_the_one_that_counts(tmp_path):
    """Key sets of tens of MB (TFHE evaluation keys): limits.max_public_key_mb is the one knob; the
    transport's own max_key_mb only tightens it."""
    big = b"k" * (33 * 1024 * 1024)  # over the 32 MB that used to be the transport's fixed default
    (tmp_path / f"{OTHER}.keys").write_bytes(big)
    assert transport(tmp_path).fetch_at_most(OTHER, {}, 64 * 1024 * 1024) == big
    with pytest.raises(InvalidRequest, match="reads at most 33554432"):
        transport(tmp_path).fetch(OTHER, {})  # no limit from anyone: 32 MB
    with pytest.raises(InvalidRequest, match="reads at most 1048576"):
        transport(tmp_path, max_key_mb=1).fetch_at_most(OTHER, {}, 64 * 1024 * 1024)
