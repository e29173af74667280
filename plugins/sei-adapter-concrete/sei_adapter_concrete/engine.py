"""The process that runs Concrete circuits for a service worker: `python -P engine.py`.

It holds the compiled servers and the clients' evaluation keys, deserialised once, and keeps them
between requests: Concrete expands compressed keys on their first run, so a kept key set runs
several times faster than one deserialised per call. It is a process of its own, started fresh
(never forked: Concrete's runtime uses OpenMP and threads), because the native runtime can crash
on hostile keys (evaluation keys of another circuit end in SIGSEGV); the worker then starts a new
engine and answers the request with an error.

Requests and answers are frames of data (sei_framework's `serve_isolated`: a JSON header and raw
blobs, never a pickle), so an engine a hostile input took over can send the worker nothing that
runs. Requests: {"op": "ping"}, {"op": "keys", "token", "blob"}, {"op": "run", "server", "token",
"ciphertexts"} and {"op": "forget", "tokens"}; a request it cannot serve is refused with a message.
"""

from __future__ import annotations

import os
from typing import Any

from sei_framework import InvalidRequest, serve_isolated


def _refused(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="rejected_input")


def _field(request: dict[str, Any], name: str, kind: type) -> Any:
    value = request.get(name)
    if not isinstance(value, kind):
        raise _refused(f"engine request field {name!r} must be a {kind.__name__}")
    return value


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
            raise _refused(f"the evaluation keys cannot be read ({type(exc).__name__})") from None
        return len(self.keys)

    def read(self, i: int, blob: bytes) -> Any:
        """Ciphertext i as a Concrete value; refused unless it parses and serialises back to the same bytes."""
        try:
            value = self.fhe.Value.deserialize(blob)
            canonical = value.serialize() == blob
        except Exception as exc:  # noqa: BLE001
            raise _refused(f"ciphertext {i} cannot be read ({type(exc).__name__})") from None
        if not canonical:
            raise _refused(f"ciphertext {i} cannot be read (bytes beyond the value)")
        return value

    def run(self, path: str, token: str, ciphertexts: list[bytes]) -> list[bytes]:
        if token not in self.keys:
            raise _refused(f"unknown key token {token!r}")
        server, keys = self.server(path), self.keys[token]
        results = []
        for i, blob in enumerate(ciphertexts):
            value = self.read(i, blob)
            try:
                result = server.run(value, evaluation_keys=keys)
            except Exception as exc:  # noqa: BLE001
                raise _refused(f"ciphertext {i} does not fit the model's circuit ({type(exc).__name__})") from None
            results.append(result.serialize())
        return results

    def forget(self, tokens: list[str]) -> int:
        for token in tokens:
            self.keys.pop(token, None)
        return len(self.keys)

    def handle(self, request: Any) -> Any:
        if not isinstance(request, dict):
            raise _refused("an engine request is an object with an 'op'")
        op = request.get("op")
        if op == "ping":
            return os.getpid()
        if op == "keys":
            return self.load_keys(_field(request, "token", str), _field(request, "blob", bytes))
        if op == "run":
            ciphertexts = _field(request, "ciphertexts", list)
            if not all(isinstance(blob, bytes) for blob in ciphertexts):
                raise _refused("engine request field 'ciphertexts' must hold bytes")
            return self.run(_field(request, "server", str), _field(request, "token", str), ciphertexts)
        if op == "forget":
            tokens = _field(request, "tokens", list)
            return self.forget([token for token in tokens if isinstance(token, str)])
        raise _refused(f"unknown engine operation {op!r}")


def main() -> None:
    serve_isolated(Engine().handle)


if __name__ == "__main__":
    main()
