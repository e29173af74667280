"""The browser page's static files, served by the local target under /page/ on the service's own origin.

Only regular files inside the folder, by exact relative path: no listing, no dot files, no symlink out of
it. The HTML carries a Content-Security-Policy that lets the page load scripts and wasm from this origin
only and send requests to this origin only (a page on the same origin as the service needs no CORS).

Each file carries a strong ETag, the SHA-256 of its bytes, and `Cache-Control: no-cache`: the browser may keep
a copy but asks each time, and a request whose If-None-Match names the file's current tag gets 304 without
the body. A redeployed page (other bytes) has other tags, so no stale script is ever used.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .answers import error_answer

__all__ = ["PAGE_PREFIX", "StaticPage", "CONTENT_SECURITY_POLICY"]

PAGE_PREFIX = "/page/"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; "
    "style-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ENTITY_TAG = re.compile(r'(?:W/)?("[\x21\x23-\x7e\x80-\xff]*")')
"""One entity tag of an If-None-Match list (RFC 9110 8.8.3), weak or strong; group 1 is its quoted value."""


def entity_tag(body: bytes) -> str:
    """The strong ETag of a file's bytes: its SHA-256, quoted."""
    return f'"{hashlib.sha256(body).hexdigest()}"'


def none_match(header: str, tag: str) -> bool:
    """Whether If-None-Match `header` names `tag` (`*`, or a listed tag by the weak comparison RFC 9110 asks
    for If-None-Match: W/ does not count)."""
    if header.strip() == "*":
        return True
    return tag in ENTITY_TAG.findall(header)


class StaticPage:
    """GET/HEAD under /page/ from `root`; everything else goes to `app`."""

    def __init__(self, app: Callable, root: Path) -> None:
        self.app = app
        self.root = root.resolve()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PAGE_PREFIX.rstrip("/"):
            start_response("301 Moved Permanently", [("Location", PAGE_PREFIX), ("Content-Length", "0")])
            return [b""]
        if not path.startswith(PAGE_PREFIX):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("GET", "HEAD"):
            return error_answer(
                start_response, 405, "method_not_allowed", f"{method} is not allowed on the page's files",
                headers=[("Allow", "GET, HEAD")],
            )  # fmt: skip
        found = self.find(path[len(PAGE_PREFIX) :] or "index.html")
        if found is None:
            return error_answer(start_response, 404, "not_found", "no such file of the page")
        body = found.read_bytes()
        tag = entity_tag(body)
        headers = [
            ("ETag", tag),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]
        if found.suffix == ".html":
            headers += [("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("Referrer-Policy", "no-referrer")]
        if none_match(environ.get("HTTP_IF_NONE_MATCH", ""), tag):
            start_response("304 Not Modified", headers)
            return [b""]
        start_response("200 OK", [("Content-Type", TYPES[found.suffix]), ("Content-Length", str(len(body))), *headers])
        return [b"" if method == "HEAD" else body]

    def find(self, relative: str) -> Path | None:
        """The file at `relative` inside the root, of a known type; None for anything else."""
        parts = relative.split("/")
        if any(not part or part.startswith(".") or "\\" in part or "\x00" in part for part in parts):
            return None
        candidate = self.root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file() or resolved.suffix not in TYPES:
            return None
        return resolved
