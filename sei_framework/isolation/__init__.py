"""Run native code on untrusted input in another process, so an abort cannot take the caller down.

Some homomorphic-encryption libraries call std::terminate on malformed ciphertexts or keys, and a
memory corruption there may leave the other process doing anything. So every channel carries data
only (sei_framework.framing: a JSON header and raw blobs, bounded; never a pickle): whatever the
other process writes, the caller gets a value or an error, and nothing it sent runs. A crash, a
hang, or bytes that are not one frame become an InvalidRequest with a fixed message; what the
library said (its stderr) goes to the log only, never into the answer.

Each answer is {"ok": value} or {"refused": {"code": ..., "message": ...}} (a SeiError raised on
purpose in the other process, whose message was written for the caller). Three mechanisms:

- `call_isolated` forks: cheap, and the child shares the caller's memory (cached keys). A forked
  child holds only the forking thread, so it must not need a lock another thread may hold: use it
  where no other thread of the process runs the native library the child calls (the service's
  workers, whose native calls on client bytes all happen in these children).
- `run_script_isolated` starts a fresh interpreter for one request: slower to start, safe in any
  process, so the one to use in a client, which may be called from many threads at once. The
  script answers with `serve_isolated(handle, once=True)`.
- `IsolatedProcess` keeps a fresh interpreter running a script that loops in `serve_isolated`:
  for state that is expensive to rebuild per request (expanded evaluation keys).
"""


from __future__ import annotations

from .answers import ProcessLost
from .fork import call_isolated
from .process import IsolatedProcess
from .scripts import run_script_isolated, serve_isolated

__all__ = ["IsolatedProcess", "ProcessLost", "call_isolated", "run_script_isolated", "serve_isolated"]
