"""The server side of the tree engine: evaluate each tree on encrypted split bits and sum over the trees.

On a flat modulus with one output walked (the others derived from it, `derive.derived_outputs`), each tree is
evaluated bottom-up (`horner`). Otherwise it is walked down: for an internal node with indicator I and split bit b,
right = I * b, left = I - right (the root: right = b, left = 1 - b). A product is relinearized only when a child is
internal (a leaf's indicator is only multiplied by a constant and summed), then switched down one prime. A bit
needed below its upload level keeps only that level's primes (a fresh ciphertext stays valid; no modulus switch):
every ciphertext of one level then carries the same BGV correction factor, so additions never rescale noise by a
balancing factor of up to t. Leaf terms are summed per level and output, switched to the output level once per
level, relinearized once per output. Constants are encoded once (cached). With one output walked, two sibling
leaves with constants a (left) and c (right) under indicator I add I * (a + (c - a) * bit): one unrelinearized
product; its noise is at most the sum of the two leaves' terms, so `bound.chain_noise` still bounds it.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import seal

from . import horner, wire
from .derive import derived_outputs
from .seal_context import context_for, expand_a
from .seal_plan import ServerPlan

__all__ = ["TreeServer"]


class TreeServer:
    """Evaluates requests for one plan with one client's relinearization keys."""

    def __init__(self, plan: ServerPlan, relin_keys: bytes):
        self.plan = plan
        self.c = context_for(plan.params)
        try:
            self.rk = self.c.ctx.from_relin_str(relin_keys)
        except (ValueError, RuntimeError, TypeError) as e:
            raise wire.TreesInputError("relinearization keys do not load for these parameters") from e
        key_level = list(self.c.ctx.key_context_data().parms_id())
        if list(self.rk.parms_id()) != key_level:
            raise wire.TreesInputError("relinearization keys were made for other parameters")
        if all(len(t.split) == 0 for t in plan.trees):
            raise wire.TreesInputError("the ensemble has no split: nothing to evaluate encrypted")
        self._plain: dict[int, seal.Plaintext] = {}
        self._plain_ntt: dict[tuple[int, int], seal.Plaintext] = {}
        self._const_cts: dict[tuple[int, int], seal.Ciphertext] = {}
        self._req_size = wire.request_size(plan.client)
        self._split_sizes = wire.split_sizes(plan.client)
        self._switching = plan.params.switching
        self.derived = derived_outputs(plan.leaf_consts, plan.params.n_outputs)
        base = [o for o in range(plan.params.n_outputs) if o not in self.derived]
        # one output walked: sibling leaves fold into one product per pair (the pair's noise is at most the sum
        # of its two leaves' terms, which `bound.chain_noise` bounds)
        self._single: int | None = base[0] if len(base) == 1 else None
        # a flat modulus and one walked output: each tree bottom-up (`horner`), half the products and relinearizations
        self._horner = self._single is not None and not self._switching
        # leaf constants with the derived outputs zeroed: no leaf term is computed for them
        self._base_consts = tuple(np.where(np.isin(np.arange(c.shape[1]), list(self.derived)), 0, c)
                                  for c in plan.leaf_consts)
        self._ops = horner.Ops(self.c.evaluator, self.rk, self.c.t, self._const_ntt, self._const_ct)

    def _const(self, c: int) -> seal.Plaintext:
        """A constant plaintext (one coefficient: SEAL's fast scalar path), encoded once."""
        v = int(c) % self.c.t
        p = self._plain.get(v)
        if p is None:
            p = self._plain[v] = seal.Plaintext(format(v, "X"))
        return p

    def _const_ntt(self, c: int, k: int) -> seal.Plaintext:
        """The constant in NTT form at level k (a pointwise product instead of a transform per use), encoded once."""
        key = (int(c) % self.c.t, k)
        p = self._plain_ntt.get(key)
        if p is None:
            p = self._plain_ntt[key] = self.c.evaluator.transform_to_ntt(self._const(c), self.c.parms_id_lists[k])
        return p

    def _const_ct(self, c: int, k: int) -> seal.Ciphertext:
        """The constant as a noiseless ciphertext (c, 0) at level k, correction factor 1, cached: adding it to a
        fresh-residue ciphertext (factor 1) equals add_plain without add_plain's transform per call. The NTT of a
        constant polynomial is that constant in every slot."""
        key = (int(c) % self.c.t, k)
        ct = self._const_cts.get(key)
        if ct is None:
            v = key[0] - self.c.t if key[0] > self.c.t // 2 else key[0]  # centred: its noise is |v| <= t/2
            c0 = np.array([[v % q] * self.c.n for q in self.c.primes[:k]], dtype=np.uint64)
            ct = self._const_cts[key] = self.c.ct_from_residues(c0, np.zeros_like(c0))
        return ct

    def parse_request(self, request: bytes) -> tuple[int, list[seal.Ciphertext | None]]:
        """Validate a request and rebuild each split's ciphertext at its level."""
        cp = self.plan.client
        n_rows = wire.parse_header(request, wire.KIND_REQUEST, cp, self._req_size, cp.n_splits)
        return n_rows, self.parse_splits(memoryview(request)[wire.HEADER.size:], range(cp.n_splits))

    def parse_splits(self, body: bytes | memoryview, splits: Iterable[int], needed: set[int] | None = None,
                     offsets: Sequence[int] | None = None) -> list[seal.Ciphertext | None]:
        """Range-check the given splits' ciphertexts and rebuild the ``needed`` ones (None: all); None for the
        others. ``body`` holds them one after another in that order (a request's body, or a worker's share of
        it), or each at its ``offsets`` entry (indexed by split: the parent's share read in place)."""
        cp = self.plan.client
        splits = list(splits)
        if offsets is None:
            if len(body) != sum(self._split_sizes[s] for s in splits):
                raise wire.TreesInputError("the splits' payload has an unexpected size")
            starts = np.cumsum([0, *(self._split_sizes[s] for s in splits)])
            at = {s: int(starts[i]) for i, s in enumerate(splits)}
        else:
            at = {s: int(offsets[s]) for s in splits}
        view = memoryview(body)
        n = self.c.n
        cts: list[seal.Ciphertext | None] = [None] * cp.n_splits
        for s in splits:
            off = at[s]
            primes = self.c.primes[:cp.split_levels[s]]
            seed = bytes(view[off:off + wire.SEED_BYTES])
            off += wire.SEED_BYTES
            payload = view[off:off + wire.packed_bytes(primes, n)]
            if needed is not None and s not in needed:
                wire.unpack_residues(payload, primes, n, f"split {s}")  # range-checked all the same
                continue
            buf, res = self.c.ct_buffer(len(primes))
            wire.unpack_residues(payload, primes, n, f"split {s}", out=res[0])
            expand_a(seed, primes, n, out=res[1])
            try:
                cts[s] = self.c.ct_from_buffer(buf)
            except (ValueError, RuntimeError) as e:
                raise wire.TreesInputError(f"split {s}: ciphertext does not load: {e}") from e
        return cts

    def units(self, halves: bool = True) -> list[tuple[int, int]]:
        """Work units for `partial`: (tree, side), side -1 the whole tree, 0/1 the root's left/right subtree
        (halves=False: whole trees only; a half re-reads its root's bit)."""
        out: list[tuple[int, int]] = []
        for i, t in enumerate(self.plan.trees):
            out.extend([(i, 0), (i, 1)] if halves and len(t.split) else [(i, -1)])
        return out

    def splits_of(self, units: Iterable[tuple[int, int]]) -> set[int]:
        """The splits the given units read."""
        need: set[int] = set()
        for ti, side in units:
            t = self.plan.trees[ti]
            if len(t.split) == 0:
                continue
            need.add(int(t.split[0]))
            stack = [int(t.left[0]), int(t.right[0])] if side < 0 else [int((t.left, t.right)[side][0])]
            while stack:
                node = stack.pop()
                if node >= 0:
                    need.add(int(t.split[node]))
                    stack.extend((int(t.left[node]), int(t.right[node])))
        return need

    def evaluate(self, request: bytes) -> bytes:
        """The response to a request, in this process."""
        n_rows, bits = self.parse_request(request)
        outs = self.partial(bits, self.units(halves=False))
        return self.pack_response(n_rows, self.finish(outs, bits))

    def finish(self, sums: list[seal.Ciphertext | None], bits: list[seal.Ciphertext | None]
               ) -> list[seal.Ciphertext]:
        """The response's ciphertexts from the summed partials: an encrypted zero where no leaf fed an output,
        then each derived output from its base (a negation and a plaintext constant: the base's noise)."""
        outs = [self.zero(bits) if ct is None and o not in self.derived else ct for o, ct in enumerate(sums)]
        ev = self.c.evaluator
        for o, (base, sign, const) in self.derived.items():
            b = outs[base]
            assert b is not None
            ct = ev.negate(b) if sign < 0 else seal.Ciphertext(b)
            if const % self.c.t:
                ev.add_plain_inplace(ct, self._const(const))
            outs[o] = ct
        return [ct for ct in outs if ct is not None]

    def pack_response(self, n_rows: int, outs: list[seal.Ciphertext]) -> bytes:
        parts = [wire.pack_header(wire.KIND_RESPONSE, self.plan.client, n_rows, len(outs))]
        for ct in outs:
            raw = ct.to_string()
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)

    def partial(self, bits: list[seal.Ciphertext | None], units: Iterable[tuple[int, int]]
                ) -> list[seal.Ciphertext | None]:
        """Per output, the encrypted sum over the given work units (size 2, output level); None where no leaf
        of these units feeds the output."""
        ev, c = self.c.evaluator, self.c
        n_out = self.plan.params.n_outputs
        terms: dict[tuple[int, int], list[seal.Ciphertext]] = defaultdict(list)  # (level, output) -> terms
        consts = np.zeros(n_out, dtype=np.int64)
        switched: dict[tuple[int, int], seal.Ciphertext] = {}

        def bit(s: int) -> seal.Ciphertext:
            b = bits[s]
            if b is None:
                raise RuntimeError(f"split {s} was not parsed for this work unit")
            return b

        def bit_at(s: int, k: int) -> seal.Ciphertext:
            b = bit(s)
            if b.coeff_modulus_size() == k:
                return b
            got = switched.get((s, k))
            if got is None:  # a fresh ciphertext's residues under fewer primes: no scaling, correction factor 1
                res = c.residues(b)
                got = switched[(s, k)] = c.ct_from_residues(res[0, :k], res[1, :k])
            return got

        def leaf(vals: np.ndarray, ind: seal.Ciphertext) -> None:
            k = ind.coeff_modulus_size()
            for o in np.flatnonzero(vals):
                terms[(k, int(o))].append(ev.multiply_plain(ind, self._const_ntt(int(vals[o]), k)))

        def pair(ind: seal.Ciphertext, s: int, o: int, v_left: int, v_right: int) -> None:
            """Two sibling leaves of the one walked output: ind * (v_left + (v_right - v_left) * bit), one
            unrelinearized product in place of two indicators and two constant products."""
            k = ind.coeff_modulus_size()
            if (v_right - v_left) % c.t == 0:
                if v_left % c.t:
                    terms[(k, o)].append(ev.multiply_plain(ind, self._const_ntt(v_left, k)))
                return
            suffix = ev.multiply_plain(bit_at(s, k), self._const_ntt(v_right - v_left, k))
            if v_left % c.t:
                ev.add_inplace(suffix, self._const_ct(v_left, k))
            prod = ev.multiply(ind, suffix)
            if self._switching:
                ev.mod_switch_to_next_inplace(prod)
            terms[(prod.coeff_modulus_size(), o)].append(prod)

        for ti, side in units:
            t, vals = self.plan.trees[ti], self._base_consts[ti]
            if len(t.split) == 0:
                consts += vals[0]
                continue
            if self._horner:
                o = self._single
                assert o is not None
                ct, const = horner.tree_value(self._ops, t, vals[:, o], side, bit)
                consts[o] += const
                if ct is not None:
                    terms[(ct.coeff_modulus_size(), o)].append(ct)
                continue
            stack: list[tuple[int, seal.Ciphertext | None]] = [(0, None)]
            while stack:
                node, ind = stack.pop()
                s = int(t.split[node])
                lc, rc = int(t.left[node]), int(t.right[node])
                if ind is not None and lc < 0 and rc < 0 and self._single is not None:
                    pair(ind, s, self._single, int(vals[~lc][self._single]), int(vals[~rc][self._single]))
                    continue
                if ind is None:
                    right = bit(s)
                    left = right
                    if side != 1:
                        left = ev.negate(right)
                        ev.add_inplace(left, self._const_ct(1, left.coeff_modulus_size()))
                else:
                    right = ev.multiply(ind, bit_at(s, ind.coeff_modulus_size()))
                    if lc >= 0 or rc >= 0:
                        ev.relinearize_inplace(right, self.rk)
                    if self._switching:
                        ev.mod_switch_to_next_inplace(right)
                        left = ev.mod_switch_to_next(ind)
                        ev.sub_inplace(left, right)
                    else:
                        left = ev.sub(ind, right)
                for j, (child, ci) in enumerate(((lc, left), (rc, right))):
                    if ind is None and side >= 0 and j != side:
                        continue
                    if child >= 0:
                        stack.append((child, ci))
                    else:
                        leaf(vals[~child], ci)
        return [None if o in self.derived else self._output(o, terms, consts[o], bits, fill=False)
                for o in range(n_out)]

    def zero(self, bits: list[seal.Ciphertext | None]) -> seal.Ciphertext:
        """An encryption of 0 at the output level for an output no leaf feeds: t times a fresh bit (by doubling;
        any plaintext multiple would be centred mod t and cancel to a transparent ciphertext)."""
        ev, c = self.c.evaluator, self.c
        res = c.residues(next(x for x in bits if x is not None))
        k = self.plan.params.out_primes
        b = c.ct_from_residues(res[0, :k], res[1, :k])
        acc: seal.Ciphertext | None = None
        for i in range(c.t.bit_length()):
            if (c.t >> i) & 1:
                acc = b if acc is None else ev.add(acc, b)
            b = ev.add(b, b)
        assert acc is not None
        return acc

    def _output(self, o: int, terms: dict[tuple[int, int], list[seal.Ciphertext]], const: int,
                bits: list[seal.Ciphertext | None], fill: bool) -> seal.Ciphertext | None:
        ev, c = self.c.evaluator, self.c
        out_k = self.plan.params.out_primes
        target = c.parms_id_lists[out_k]
        acc: seal.Ciphertext | None = None
        for (k, oo), ts in sorted(terms.items()):
            if oo != o:
                continue
            s = ev.add_many(ts) if len(ts) > 1 else ts[0]
            if k != out_k:
                s = ev.mod_switch_to(s, target)
            acc = s if acc is None else ev.add(acc, s)
        if acc is None:
            if not fill:
                return None
            acc = self.zero(bits)
        if acc.size() > 2:
            ev.relinearize_inplace(acc, self.rk)
        if const % c.t:
            ev.add_plain_inplace(acc, self._const(int(const)))
        return acc
