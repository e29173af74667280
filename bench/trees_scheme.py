"""CKKS against BGV for the tree engine's two kernels, measured on one core in one run.

For a full tree of depth D (D levels of internal nodes, D - 1 ciphertext products down the deepest
path) at N = 16384 and 128-bit security, it times, per scheme:
  * one internal-node product: multiply + relinearize + rescale (CKKS) / modulus switch (BGV), at each level;
  * one last-level product without relinearization (the leaf indicators are only summed);
  * one leaf term: the indicator (size 3) times a constant leaf value, accumulated into the sum.
and prints microseconds per ROW for each (CKKS holds N/2 rows per ciphertext, BGV N), the batch upload
bytes per row and, for BGV, the noise budget left after the deepest chain (it must stay > 0).

usage: python -m bench.trees_scheme [--depth 6] [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import seal

N = 16384


def _timed(fn: Callable[[], object], reps: int) -> float:
    """Median CPU seconds (SEAL runs these on one thread; CPU time is not inflated by other load on the machine)."""
    ts = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        ts.append(time.process_time() - t)
    return statistics.median(ts)


def _walk(ev: Any, rk: Any, bit: Any, ind: Any, depth: int, reps: int, drop: Callable[[Any], None],
          fix: Callable[[Any], None] = lambda ct: None) -> tuple[list[float], float, Any]:
    """Time a node product (multiply, relinearize, `drop` a prime) at each of `depth - 2` levels, then a last-level
    product without relinearization; `fix` resets a result (CKKS: its scale). Returns the per-level times, the last
    one's and a leaf indicator."""
    per_level = []
    for _ in range(depth - 2):
        b = ev.mod_switch_to(bit, ind.parms_id())

        def prod(ind: Any = ind, b: Any = b) -> Any:
            r = ev.multiply(ind, b)
            ev.relinearize_inplace(r, rk)
            drop(r)
            return r
        per_level.append(_timed(prod, reps))
        ind = prod()
        fix(ind)
    b = ev.mod_switch_to(bit, ind.parms_id())

    def last(ind: Any = ind, b: Any = b) -> Any:
        r = ev.multiply(ind, b)
        drop(r)
        return r
    t_last = _timed(last, reps)
    leaf = last()
    fix(leaf)
    return per_level, t_last, leaf


def ckks(depth: int, reps: int) -> dict[str, float]:
    bits = [60] + [40] * depth + [60]
    p = seal.EncryptionParameters(seal.scheme_type.ckks)
    p.set_poly_modulus_degree(N)
    p.set_coeff_modulus(seal.CoeffModulus.Create(N, bits))
    ctx = seal.SEALContext(p, True, seal.sec_level_type.tc128)
    assert ctx.parameters_set(), ctx.parameter_error_message()
    kg = seal.KeyGenerator(ctx)
    rk = kg.create_relin_keys()
    enc = seal.Encryptor(ctx, kg.secret_key())
    ev, cod = seal.Evaluator(ctx), seal.CKKSEncoder(ctx)
    rows = N // 2
    scale = 2.0 ** 40
    bit = enc.encrypt_symmetric(cod.encode(np.ones(rows), scale))
    ind = enc.encrypt_symmetric(cod.encode(np.ones(rows), scale))
    per_level, t_last, leaf = _walk(ev, rk, bit, ind, depth, reps, ev.rescale_to_next_inplace,
                                    lambda ct: ct.scale(scale))
    pv = cod.encode(0.123, scale)
    ev.mod_switch_to_inplace(pv, leaf.parms_id())
    acc = ev.multiply_plain(leaf, pv)
    t_leaf = _timed(lambda: ev.add_inplace(acc, ev.multiply_plain(leaf, pv)), reps)
    up = 2 * len(bits[:-1]) * N * 8 / 2  # seeded: c0 only, 8-byte words, all data primes
    return {"rows": rows, "node_us": 1e6 * statistics.mean(per_level) / rows, "last_us": 1e6 * t_last / rows,
            "leaf_us": 1e6 * t_leaf / rows, "up_B_per_row_per_split": up / rows, "budget": float("nan")}


def bgv(depth: int, reps: int, t_bits: int) -> dict[str, float]:
    # BGV: every product needs ~log t + 20 bits of modulus to switch away its noise.
    prime = min(60, t_bits + 20)
    bits = [60] + [prime] * (depth) + [60]
    p = seal.EncryptionParameters(seal.scheme_type.bgv)
    p.set_poly_modulus_degree(N)
    p.set_coeff_modulus(seal.CoeffModulus.Create(N, bits))
    p.set_plain_modulus(seal.PlainModulus.Batching(N, t_bits))
    ctx = seal.SEALContext(p, True, seal.sec_level_type.tc128)
    assert ctx.parameters_set(), ctx.parameter_error_message()
    kg = seal.KeyGenerator(ctx)
    sk = kg.secret_key()
    rk = kg.create_relin_keys()
    enc, dec = seal.Encryptor(ctx, sk), seal.Decryptor(ctx, sk)
    ev, cod = seal.Evaluator(ctx), seal.BatchEncoder(ctx)
    rows = N
    bit = enc.encrypt_symmetric(cod.encode(np.ones(rows, dtype=np.int64)))
    ind = enc.encrypt_symmetric(cod.encode(np.ones(rows, dtype=np.int64)))
    per_level, t_last, leaf = _walk(ev, rk, bit, ind, depth, reps, ev.mod_switch_to_next_inplace)
    pv = cod.encode(np.full(rows, 12345, dtype=np.int64))
    acc = ev.multiply_plain(leaf, pv)
    t_leaf = _timed(lambda: ev.add_inplace(acc, ev.multiply_plain(leaf, pv)), reps)
    budget = dec.invariant_noise_budget(ev.multiply_plain(leaf, pv))
    up = len(bits[:-1]) * N * 8
    return {"rows": rows, "node_us": 1e6 * statistics.mean(per_level) / rows, "last_us": 1e6 * t_last / rows,
            "leaf_us": 1e6 * t_leaf / rows, "up_B_per_row_per_split": up / rows, "budget": float(budget)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    print(f"N={N}, full tree depth {a.depth}, one core, median CPU time of {a.reps}; microseconds per row")
    print("| scheme | rows/ct | node product | last-level product (no relin) | leaf term | "
          "upload B/row/split (seeded, 8-byte words) | noise budget left |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in (("CKKS, scale 2^40", ckks(a.depth, a.reps)),
                    ("BGV, t 20 bits", bgv(a.depth, a.reps, 20)),
                    ("BGV, t 30 bits", bgv(a.depth, a.reps, 30))):
        print(f"| {name} | {r['rows']:.0f} | {r['node_us']:.3f} | {r['last_us']:.3f} | {r['leaf_us']:.3f} | "
              f"{r['up_B_per_row_per_split']:.0f} | {r['budget']:.0f} |")


if __name__ == "__main__":
    main()
