"""Both cores: this process and worker processes each evaluate a share of the trees, passing only bytes.

Each worker is a fresh interpreter (``python -m sei_adapter_trees.engine.workers``: no fork of a threaded
parent) talking over its stdin/stdout with length-prefixed frames: a JSON header and raw byte payloads, never a
pickle. At start it receives the server plan (`ServerPlan.to_bytes`, an .npz read without pickle), the
relinearization keys, its work units (whole trees, or the root's left or right subtree of a tree when there are
few trees) and the splits it reads; for each request the parent sends it only those splits' ciphertexts and it
returns one partial sum per output. Meanwhile the parent evaluates the lightest share itself, reading its splits
in place (and range-checking those no tree reads), then adds the partial sums.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import seal

from . import frames, wire
from .seal_plan import ServerPlan
from .server import TreeServer

__all__ = ["WorkerPool"]

WHOLE_TREES_PER_WORKER = 4  # from this many trees per worker, work is split by whole trees
START_TIMEOUT_S = 60.0


class WorkerPool:
    """Evaluates requests for one plan and one client's keys on ``workers`` processes, this one included
    (1: all in this process)."""

    def __init__(self, plan: ServerPlan, relin_keys: bytes, workers: int = 2, timeout_s: float = 240.0):
        self.server = TreeServer(plan, relin_keys)
        self.n_workers = max(1, int(workers))
        self.timeout_s = timeout_s
        """Longest a request waits for the workers (then TimeoutError: a hung worker fails it, not the service)."""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._pipes: list[frames.Pipe] = []
        self._seq = 0  # each request's number, echoed by every worker's answer
        if self.n_workers == 1:
            return
        shares: list[list[tuple[int, int]]] = [[] for _ in range(self.n_workers)]
        load = [0] * self.n_workers
        # whole trees when there are enough to balance; else halves (each re-reads its root's bit)
        units = self.server.units(halves=len(plan.trees) < WHOLE_TREES_PER_WORKER * self.n_workers)
        for u in sorted(units, key=self._weight, reverse=True):  # greedy: heaviest unit first
            i = load.index(min(load))
            shares[i].append(u)
            load[i] += self._weight(u)
        shares = [shares[i] for i in sorted(range(self.n_workers), key=load.__getitem__)]
        self._own = shares[0]  # the lightest: this process also sends, collects and finishes
        self._own_needed = self.server.splits_of(self._own)
        # this process range-checks its splits and those no tree reads; each worker only the splits it reads
        self._own_splits = sorted(self._own_needed | (set(range(plan.client.n_splits)) - self.server.splits_of(units)))
        sizes = wire.split_sizes(plan.client)
        self._starts = [int(x) for x in np.cumsum((wire.HEADER.size, *sizes))]
        plan_bytes = plan.to_bytes()
        self._ranges: list[list[tuple[int, int]]] = []
        worker_splits = [sorted(self.server.splits_of(share)) for share in shares[1:]]
        try:
            for splits in worker_splits:
                self._ranges.append([(self._starts[x], self._starts[x] + sizes[x]) for x in splits])
                proc = subprocess.Popen([sys.executable, "-m", "sei_adapter_trees.engine.workers"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                self._procs.append(proc)
                self._pipes.append(frames.Pipe(proc))
            deadline = time.monotonic() + START_TIMEOUT_S
            for pipe, share, splits in zip(self._pipes, shares[1:], worker_splits, strict=True):
                pipe.send({"units": share, "splits": splits}, [plan_bytes, relin_keys], deadline)
            for pipe in self._pipes:
                header, _ = pipe.recv(deadline)
                if not header.get("ready"):
                    raise RuntimeError(f"tree worker failed to start: {header.get('error')}")
        except BaseException:
            self.kill()  # no worker outlives a failed start
            raise

    def _weight(self, unit: tuple[int, int]) -> int:
        t = self.server.plan.trees[unit[0]]
        return 1 + len(self.server.splits_of([unit])) if len(t.split) else 1

    def evaluate(self, request: bytes) -> bytes:
        if not self._procs:
            return self.server.evaluate(request)
        server = self.server
        cp = server.plan.client
        n_rows = wire.parse_header(request, wire.KIND_REQUEST, cp, wire.request_size(cp), cp.n_splits)
        view = memoryview(request)
        deadline = time.monotonic() + self.timeout_s
        self._seq += 1
        try:
            for pipe, ranges in zip(self._pipes, self._ranges, strict=True):
                pipe.send({"op": "eval", "rows": n_rows, "seq": self._seq}, [[view[a:b] for a, b in ranges]], deadline)
            sums, spare, error = self._collect(view, deadline)
        except BaseException:  # the pipes may be out of step with the workers: none of them is trusted again
            self.kill()
            raise
        if error is not None:
            raise wire.TreesInputError(error)
        return server.pack_response(n_rows, server.finish(sums, [spare] if spare is not None else []))

    def _collect(self, view: memoryview, deadline: float
                 ) -> tuple[list[seal.Ciphertext | None], seal.Ciphertext | None, str | None]:
        """This process's share and every worker's answer (all read, so the pipes stay in step): the summed
        partials, a fresh bit (for outputs no leaf feeds) and the first refusal, if any."""
        server = self.server
        error: str | None = None
        try:
            bits = server.parse_splits(view, self._own_splits, self._own_needed, self._starts[:-1])
            sums = server.partial(bits, self._own)
        except wire.TreesInputError as e:
            error, bits, sums = str(e), [], [None] * server.plan.params.n_outputs
        ev = server.c.evaluator
        spare = next((b for b in bits if b is not None), None)
        for pipe in self._pipes:
            header, payloads = pipe.recv(deadline)
            if header.get("seq") != self._seq:
                raise RuntimeError("a tree worker answered out of step")
            if "error" in header:
                error = error or header["error"]
                continue
            if len(payloads) != len(sums) + 1:
                raise RuntimeError("a tree worker answered with the wrong number of outputs")
            if payloads[-1] and spare is None:
                spare = server.c.ctx.from_cipher_str(payloads[-1])
            for o, p in enumerate(payloads[:-1]):
                if p:
                    ct = server.c.ctx.from_cipher_str(p)
                    prev = sums[o]
                    sums[o] = ct if prev is None else ev.add(prev, ct)
        return sums, spare, error

    def close(self) -> None:
        for proc in self._procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # hung: it does not see its stdin close
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for ends in self._pipes:
            ends.close()
        self._procs, self._pipes = [], []

    def kill(self) -> None:
        """Stop every worker at once (one died or broke the exchange: its pipes can no longer be trusted)."""
        for proc in self._procs:
            proc.kill()
        for proc in self._procs:
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:  # a dead worker's pipe
                        pass
        for ends in self._pipes:
            ends.close()
        self._procs, self._pipes = [], []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        header, (plan_bytes, relin) = frames.read_from(inp)
        server = TreeServer(ServerPlan.from_bytes(plan_bytes), relin)
        units = [(int(a), int(b)) for a, b in header["units"]]
        needed = server.splits_of(units)
        splits = [int(x) for x in header["splits"]]
        if not needed <= set(splits) or not all(0 <= x < server.plan.client.n_splits for x in splits):
            raise ValueError("the splits sent do not cover the work units")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
        frames.write(out, {"error": f"start: {type(e).__name__}: {e}"}, [])
        return
    frames.write(out, {"ready": True}, [])
    while True:
        try:
            header, payloads = frames.read_from(inp)
        except EOFError:
            return
        seq = header.get("seq")
        try:
            n_rows = int(header["rows"])  # the parent validated the request's header and size
            bits = server.parse_splits(payloads[0], splits, needed)
            outs = server.partial(bits, units)
        except wire.TreesInputError as e:
            frames.write(out, {"error": str(e), "seq": seq}, [])
            continue
        # where an output gets nothing from this worker, a fresh bit lets the parent make a zero if no worker feeds it
        empty = any(ct is None and o not in server.derived for o, ct in enumerate(outs))
        spare = bytes(next(b for b in bits if b is not None).to_string()) if empty else b""
        frames.write(out, {"rows": n_rows, "seq": seq},
                     [b"" if ct is None else bytes(ct.to_string()) for ct in outs] + [spare])


if __name__ == "__main__":
    _main()
