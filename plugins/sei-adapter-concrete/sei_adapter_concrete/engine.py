"""The process that runs Concrete circuits for a service worker: `python -P engine.py`.

It holds the compiled servers and the clients' evaluation keys, deserialised once, and keeps them
between requests: Concrete expands compressed keys on their first run, so a kept key set runs
several times faster than one deserialised per call. It is a process of its own, started fresh
(never forked: Concrete's runtime uses OpenMP and threads), because the native runtime can crash
on hostile keys (evaluation keys of another circuit end in SIGSEGV); the worker then starts a new
engine and answers the request with an error.

Messages are pickled tuples, each framed by its length (8 bytes, little endian), on stdin and
stdout; the worker is the only writer. Replies are ("ok", value) or ("error", message).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import IO, Any, BinaryIO

FRAME = struct.Struct("<Q")


def read_frame(stream: BinaryIO) -> Any | None:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def write_frame(stream: IO[bytes], message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(body)) + body)
    stream.flush()


class Engine:
    """Servers by path, evaluation keys by token."""

    def __init__(self) -> None:
        from concrete import fhe

        self.fhe = fhe
        self.servers: dict[str, Any] = {}
        self.keys: dict[str, Any] = {}

    def server(self, path: str) -> Any:
        if path not in self.servers:
            self.servers[path] = self.fhe.Server.load(path)
        return self.servers[path]

    def load_keys(self, token: str, blob: bytes) -> int:
        try:
            self.keys[token] = self.fhe.EvaluationKeys.deserialize(blob)
        except Exception as exc:  # noqa: BLE001 - Concrete raises RuntimeError (and others) on bad bytes
            raise ValueError(f"the evaluation keys cannot be read ({type(exc).__name__})") from None
        return len(self.keys)

    def run(self, path: str, token: str, ciphertexts: list[bytes]) -> list[bytes]:
        server, keys = self.server(path), self.keys[token]
        results = []
        for i, blob in enumerate(ciphertexts):
            try:
                value = self.fhe.Value.deserialize(blob)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"ciphertext {i} cannot be read ({type(exc).__name__})") from None
            try:
                result = server.run(value, evaluation_keys=keys)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"ciphertext {i} does not fit the model's circuit ({type(exc).__name__})") from None
            results.append(result.serialize())
        return results

    def forget(self, tokens: list[str]) -> int:
        for token in tokens:
            self.keys.pop(token, None)
        return len(self.keys)

    def handle(self, message: tuple) -> Any:
        op, *args = message
        if op == "ping":
            return os.getpid()
        if op == "keys":
            return self.load_keys(*args)
        if op == "run":
            return self.run(*args)
        if op == "forget":
            return self.forget(*args)
        raise ValueError(f"unknown engine operation {op!r}")


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the real stdout
    engine = Engine()
    while (message := read_frame(stdin)) is not None:
        try:
            reply = ("ok", engine.handle(message))
        except (ValueError, KeyError) as exc:
            reply = ("error", str(exc) if isinstance(exc, ValueError) else f"unknown key token {exc}")
        write_frame(stdout, reply)


if __name__ == "__main__":
    main()
