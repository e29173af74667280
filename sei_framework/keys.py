"""Key ids and the client's keyring. Secret keys never leave the keyring's folder."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import InvalidRequest, KeyringError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["KEY_ID_PATTERN", "key_id_for", "check_key_id", "Keyring", "sei_home"]

KEY_ID_PATTERN = re.compile(r"\A[a-z2-7]{32}\Z")  # \Z, not $: "$" also matches before a final newline


def key_id_for(public_keys: bytes) -> str:
    """Content address of public keys: 32 lowercase base32 characters of their SHA-256."""
    return base64.b32encode(hashlib.sha256(public_keys).digest()).decode("ascii")[:32].lower()


def check_key_id(key_id: object) -> str:
    """Return `key_id` if it has the strict key-id form, else raise InvalidRequest."""
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidRequest("key_id must be 32 characters from a-z and 2-7", code="invalid_key_id")
    return key_id


def sei_home() -> Path:
    """Where SEI keeps client keys and local deployment state ($SEI_HOME, else ~/.sei)."""
    return Path(os.environ.get("SEI_HOME") or Path.home() / ".sei")


PAIR_FILE = "keypair"
"""A scheme folder's key pair: one file, replaced atomically (earlier versions wrote two)."""
LOCK_FILE = ".lock"
_PLAIN_SCHEME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
"""A scheme used as its folder's name: no leading dot (so never `.` or `..`), no separator."""
_MAGIC = b"SEI key pair 1\n"


class Keyring:
    """One key pair per key scheme, kept in files readable only by their owner.

    Safe for any number of processes and threads: the first user of a scheme makes its pair under
    an exclusive lock, and the pair is written as one file, atomically, with its key id.

    >>> secret, public = Keyring().load_or_create(client.key_scheme, client.generate_keys)
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else sei_home() / "keys"

    def folder_for(self, scheme: str) -> Path:
        """The folder that holds `scheme`'s key pair (moving it away makes new keys on next use): a
        plain name as it is; any other (`..`, a slash, a leading dot, other characters) made safe and
        suffixed with its hash after a `~`, which no plain name has, so two schemes never share a
        folder and none lies outside the keyring."""
        given: object = scheme  # callers may pass anything: checked, not trusted to the annotation
        if not isinstance(given, str) or not given:
            raise KeyringError(f"a key scheme must be a non-empty string, not {scheme!r}")
        if _PLAIN_SCHEME.fullmatch(scheme):
            return self.folder / scheme
        digest = hashlib.sha256(scheme.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_-]', '_', scheme)[:64]}~{digest}"

    def load(self, scheme: str) -> tuple[bytes, bytes] | None:
        """The stored (secret, public) pair for `scheme`, or None; KeyringError if it is damaged."""
        folder = self.folder_for(scheme)
        try:
            blob = (folder / PAIR_FILE).read_bytes()
        except FileNotFoundError:
            return self._load_legacy(folder)  # keyrings of earlier versions: keys of batch jobs in flight
        except OSError as exc:
            raise KeyringError(f"cannot read the {scheme} key pair in {folder}: {exc.strerror}") from None
        return _decode_pair(blob, scheme, folder)

    def load_or_create(self, scheme: str, generate: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        """The stored pair for `scheme`; on first use, `generate()` makes it, once for all users."""
        pair = self.load(scheme)
        if pair is not None:
            return pair
        with self._locked(scheme) as folder:
            pair = self.load(scheme)  # another process or thread may have made it meanwhile
            if pair is None:
                pair = generate()
                self._write(folder, scheme, *pair)
            return pair

    def save(self, scheme: str, secret: bytes, public: bytes) -> None:
        """Store (replace) the pair for `scheme`, atomically and under the lock."""
        with self._locked(scheme) as folder:
            self._write(folder, scheme, secret, public)

    def _load_legacy(self, folder: Path) -> tuple[bytes, bytes] | None:
        """The two-file layout of earlier versions (read only; the client still checks the pair)."""
        try:
            return (folder / "secret.key").read_bytes(), (folder / "public.key").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyringError(f"cannot read the keys in {folder}: {exc.strerror}") from None

    @contextmanager
    def _locked(self, scheme: str) -> Iterator[Path]:
        """Hold the scheme's lock (threads of this process, then other processes) and yield its folder."""
        folder = self.folder_for(scheme)
        try:
            _private_dir(self.folder)
            _private_dir(folder)
            lock_path = folder / LOCK_FILE
            with _thread_lock(lock_path):
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    _lock_file(fd)
                    yield folder
                finally:
                    os.close(fd)  # releases the file lock
        except OSError as exc:
            raise KeyringError(f"cannot use the keyring folder {folder}: {exc.strerror or exc}") from None

    @staticmethod
    def _write(folder: Path, scheme: str, secret: object, public: object) -> None:  # a plugin's pair, checked
        if not isinstance(secret, bytes) or not isinstance(public, bytes):
            raise TypeError("a key pair is (secret bytes, public bytes)")
        fd, tmp = tempfile.mkstemp(prefix=".keypair-", suffix=".tmp", dir=folder)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encode_pair(scheme, secret, public))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / PAIR_FILE)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)


def _encode_pair(scheme: str, secret: bytes, public: bytes) -> bytes:
    """Magic line, one JSON line (scheme, key id, sizes), then the secret and the public key bytes."""
    header = {"scheme": scheme, "key_id": key_id_for(public), "secret_bytes": len(secret), "public_bytes": len(public)}
    return _MAGIC + json.dumps(header, sort_keys=True).encode("ascii") + b"\n" + secret + public


def _decode_pair(blob: bytes, scheme: str, folder: Path) -> tuple[bytes, bytes]:
    def damaged(problem: str) -> KeyringError:
        return KeyringError(
            f"the {scheme} key pair in {folder} is unusable: {problem}; move that folder away to make "
            "new keys (the service receives the new public keys with the next request)"
        )

    end = blob.find(b"\n", len(_MAGIC))
    if not blob.startswith(_MAGIC) or end < 0:
        raise damaged(f"{PAIR_FILE} is not a SEI key pair file")
    try:
        header = json.loads(blob[len(_MAGIC) : end])
        n_secret, n_public = int(header["secret_bytes"]), int(header["public_bytes"])
        stored_id, stored_scheme = header["key_id"], header["scheme"]
    except (ValueError, TypeError, KeyError):
        raise damaged(f"the header of {PAIR_FILE} is damaged") from None
    body = blob[end + 1 :]
    if n_secret < 0 or n_public < 0 or len(body) != n_secret + n_public:
        raise damaged(f"{PAIR_FILE} is truncated or has extra bytes")
    if stored_scheme != scheme:
        raise damaged(f"{PAIR_FILE} holds keys of another scheme ({stored_scheme!r})")
    secret, public = body[:n_secret], body[n_secret:]
    if key_id_for(public) != stored_id:
        raise damaged("its public key is not the one stored with the secret key (the key id differs)")
    return secret, public


def _private_dir(path: Path) -> None:
    """Make `path` (and its parents) if missing; a folder made here is 0700."""
    if path.is_dir():
        return
    _private_dir(path.parent)
    with suppress(FileExistsError):
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is narrowed by the umask, never widened


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (where the platform can open folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock_file(fd: int) -> None:
    """Block until this process holds the exclusive lock on the open file `fd`."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    import msvcrt  # Windows: lock the first byte, retrying while another process holds it
    import time

    while True:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return
        except OSError:
            time.sleep(0.05)


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    """One lock per lock file in this process, so threads wait for each other as processes do."""
    with _thread_locks_guard:
        return _thread_locks.setdefault(os.path.realpath(path), threading.Lock())


def _forget_thread_locks() -> None:
    """A forked child starts with no thread of the parent holding a keyring lock."""
    global _thread_locks_guard
    _thread_locks.clear()
    _thread_locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_thread_locks)
