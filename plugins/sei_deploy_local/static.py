"""The browser page's static files, served by the local target under /page/ on the service's own origin.

Only regular files inside the folder, by exact relative path: no listing, no dot files, no symlink out of
it. The HTML carries a Content-Security-Policy that lets the page load scripts and wasm from this origin
only and send requests to this origin only (a page on the same origin as the service needs no CORS).
"""

from __future__ import annotations

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
        headers = [
            ("Content-Type", TYPES[found.suffix]),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]
        if found.suffix == ".html":
            headers += [("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("Referrer-Policy", "no-referrer")]
        start_response("200 OK", headers)
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
