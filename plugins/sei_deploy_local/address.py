"""Addresses of the local target: the port it picks, and where this machine reaches a bound address."""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["HOST", "connect_host", "free_port", "port_is_free", "url_host"]

HOST = "127.0.0.1"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def free_port(host: str = HOST) -> int:
    """A port that nothing listens on at `host` now."""
    with socket.socket(_family(host)) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host`:`port` now (with SO_REUSEADDR, as gunicorn binds)."""
    with socket.socket(_family(host)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def connect_host(host: str) -> str:
    """The address this machine reaches a server bound to `host` at (loopback for 0.0.0.0 and ::)."""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        return "::1" if address.version == 6 else HOST
    return host


def url_host(host: str) -> str:
    return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
