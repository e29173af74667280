"""Where the trees engine's server time goes, side by side in one process on bench/trees.py's three models (one
full batch each): the bottom-up walk against walking down (both exact, same answers), and one split's parse
against a SHAKE-256 expansion of the same bytes (the seed expansion before AES-256-CTR).

usage: python -m bench.trees_walks [--repeats 3]   (after `make bench-trees`, whose model files it reads)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from bench.trees import ROOT
from bench.trees_engine_side import _plan
from sei_adapter_trees.engine import wire
from sei_adapter_trees.engine.bits import split_bits
from sei_adapter_trees.engine.client import TreeClient
from sei_adapter_trees.engine.seal_context import expand_a
from sei_adapter_trees.engine.server import TreeServer


def _best(f: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def measure(out: Path, name: str, repeats: int) -> dict:
    ens, plan = _plan(out, name)
    X = np.load(out / "test_X.npy")
    rows = plan.params.rows
    client = TreeClient(plan.client)
    request = client.encrypt(split_bits(X[np.resize(np.arange(len(X)), rows)], ens.n_features, ens.splits))
    server = TreeServer(plan, client.relin_keys())
    _, bits = server.parse_request(request)
    walks: dict[str, float] = {}
    for _ in range(repeats):  # alternating, so both walks see the same machine
        for label, bottom_up in (("walk_down_s", False), ("bottom_up_s", True)):
            server._horner = bottom_up
            got = _best(lambda: server.partial(bits, server.units(halves=False)), 1)
            walks[label] = min(walks.get(label, got), got)
    server._horner = True
    body = memoryview(request)[wire.HEADER.size:]
    k = plan.client.split_levels[0]
    primes = server.c.primes[:k]
    per_split = _best(lambda: server.parse_splits(body, [0], None, [0]), 50)
    size = sum(8 * server.c.n * 9 // 8 for _ in primes)  # the words AES-CTR reads, with SHAKE's old slack of 1/8
    return {**{k2: round(v, 4) for k2, v in walks.items()},
            "bottom_up_speedup": round(walks["walk_down_s"] / walks["bottom_up_s"], 2),
            "parse_one_split_ms": round(per_split * 1e3, 3),
            "aes_ctr_expand_ms": round(_best(lambda: expand_a(bytes(32), primes, server.c.n), 50) * 1e3, 3),
            "shake256_same_bytes_ms": round(_best(lambda: hashlib.shake_256(bytes(32)).digest(size), 50) * 1e3, 3),
            "split_primes": k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trees")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    figures = {name: measure(args.out, name, args.repeats) for name in ("tree", "forest", "boosted100")}
    (args.out / "walks.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
