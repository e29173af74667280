"""Who may reach the Dask cluster that scores a job: TLS (`distributed.security.Security`) or loopback only.

Dask tasks and worker plugins are pickles: whoever reaches a scheduler runs code on its workers, where
the build (the model's weights) is loaded. So a scheduler is reached over TLS with the cluster's
certificates, or over plain TCP on this machine only, unless the caller opts in explicitly.
"""

from __future__ import annotations

import os

from distributed import LocalCluster
from distributed.comm.addressing import parse_address, parse_host_port
from distributed.security import Security

from ..client import is_loopback_host
from ..errors import BatchError

__all__ = ["ENCRYPTED_SCHEMES", "check_scheduler", "local_cluster", "tls_security"]

ENCRYPTED_SCHEMES = frozenset({"tls", "wss"})
INSECURE_FLAG = "--allow-insecure-scheduler"


def tls_security(
    ca_file: str | os.PathLike[str], cert: str | os.PathLike[str], key: str | os.PathLike[str] | None = None,
    *, every_role: bool = False,
) -> Security:  # fmt: skip
    """A `Security` that trusts `ca_file` and presents `cert` (and `key`, unless the cert file holds it) as
    the client; `every_role`: also as scheduler and workers (a LocalCluster started here)."""
    files = {"tls_client_cert": os.fspath(cert)}
    if key is not None:
        files["tls_client_key"] = os.fspath(key)
    for path in (ca_file, *files.values()):
        if not os.path.isfile(path):
            raise BatchError(f"TLS file {os.fspath(path)} does not exist or is not a file")
    if every_role:
        for role in ("scheduler", "worker"):
            files[f"tls_{role}_cert"] = files["tls_client_cert"]
            if "tls_client_key" in files:
                files[f"tls_{role}_key"] = files["tls_client_key"]
    return Security(tls_ca_file=os.fspath(ca_file), require_encryption=True, **files)


def check_scheduler(address: str, security: Security | None, allow_insecure: bool = False) -> None:
    """BatchError unless `address` is a scheduler that this process may hand pickled work and the build:
    TLS with `security`, or plain TCP on loopback, or plain TCP anywhere with `allow_insecure`."""
    try:
        scheme, location = parse_address(address, strict=False)
    except ValueError as exc:
        raise BatchError(f"--scheduler {address!r} is not a Dask address: {exc}") from None
    if scheme == "inproc":
        return
    if scheme in ENCRYPTED_SCHEMES:
        if security is None or not getattr(security, "tls_ca_file", None):
            raise BatchError(
                f"the scheduler {address} speaks TLS: give the cluster's CA and a client certificate "
                "(--tls-ca-file, --tls-cert and --tls-key; `security=` from Python)"
            )
        return
    if security is not None and getattr(security, "require_encryption", False):
        raise BatchError(f"TLS certificates were given but the scheduler address {address} is plain {scheme}://: use tls://")
    try:
        host = parse_host_port(location)[0]
    except ValueError:
        host = location
    if is_loopback_host(host) or allow_insecure:
        return
    raise BatchError(
        f"refusing the plain {scheme}:// scheduler {address}: it is not on this machine's loopback, and Dask "
        "tasks are pickles, so anyone who can reach that scheduler runs code on its workers and reads the model "
        "(the build is loaded on every worker) and whatever the job's storage options hold. Use TLS (a tls:// "
        f"address with --tls-ca-file, --tls-cert and --tls-key), or pass {INSECURE_FLAG} if only you can reach it"
    )


def local_cluster(workers: int, threads_per_worker: int, security: Security | None) -> LocalCluster:
    """A LocalCluster on loopback whose scheduler and workers speak TLS with each other and this client:
    `security` (every role's certificate), else a throwaway CA and certificate made for this cluster, so
    another user of this machine cannot submit work to it either."""
    import dask

    if security is None:
        security = Security.temporary()  # needs `cryptography` (the batch extra installs it)
    # Shards are independent and alike: no scheduler-side queue, so a worker never idles waiting for its next one.
    with dask.config.set({"distributed.scheduler.worker-saturation": float("inf")}):
        return LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None,
            protocol="tls://", host="127.0.0.1", security=security,
        )  # fmt: skip
