"""Headless Chromium for the browser tests, and a static site on 127.0.0.1 to serve it pages.

`make test` installs Chromium (`make chromium`: the system's, else Debian's package through apt) and the JS
client's node-seal (`make js-client`); it sets SEI_NO_SKIPS=1, so there a missing Chromium fails the tests
instead of skipping them (tests/no_skips.py). Playwright drives the system's Chromium by its path (it never
downloads a browser of its own). Import the fixtures into a test module:
`from browser import chromium_fixture, site_fixture  # noqa: F401` (named `chromium` and `site`).

    site.mount("/app/", folder)                        # static files (the JS client is at /sei/ already)
    site.route("/score", handler)                      # handler(body, headers) -> (status, headers, body)
    page = chromium.open(site.url("/app/test.html"))   # console errors and page errors are collected
    result = chromium.wait_result(page)                # waits for window.__sei_done, returns window.__sei_result
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS_CLIENT = ROOT / "clients" / "js"
NODE_SEAL = JS_CLIENT / "node_modules" / "node-seal" / "dist"
HOST = "127.0.0.1"
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
)  # fmt: skip
"""The flags that work on this project's machines (headless is Playwright's own option)."""

IMPORT_MAP = {
    "imports": {"node-seal": "/sei/node_modules/node-seal/dist/index_throws.js", "@noble/hashes/": "/sei/node_modules/@noble/hashes/"}
}
"""The import map a page served by `site` needs for the JS client's two dependencies (clients/js/README.md)."""

Handler = Callable[[bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]
"""A route: (request body, request headers) -> (status, response headers, response body)."""

_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}


def chromium_executable() -> str | None:
    """The Chromium to drive: $SEI_CHROMIUM, else `chromium` or `chromium-browser` on PATH."""
    given = os.environ.get("SEI_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class StaticSite:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port): folders mounted under URL prefixes, POST routes."""

    mounts: dict[str, Path] = field(default_factory=dict)
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, body bytes)
    server: ThreadingHTTPServer | None = None

    def mount(self, prefix: str, folder: Path) -> None:
        """Serve `folder`'s files under `prefix` ("/name/")."""
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"a mount prefix starts and ends with '/': {prefix!r}")
        self.mounts[prefix] = Path(folder).resolve()

    def route(self, path: str, handler: Handler) -> None:
        """Answer POST (and OPTIONS) requests to `path` with `handler`."""
        self.routes[path] = handler

    @property
    def origin(self) -> str:
        assert self.server is not None, "the site is not started"
        return f"http://{HOST}:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path

    def file_for(self, path: str) -> Path | None:
        """The file a GET of `path` serves, never one outside its mount."""
        for prefix, folder in sorted(self.mounts.items(), key=lambda item: -len(item[0])):
            if path.startswith(prefix):
                target = (folder / unquote(path[len(prefix):])).resolve()
                if target.is_file() and target.is_relative_to(folder):
                    return target
                return None
        return None

    def start(self) -> None:
        site = self

        class Handle(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # quiet: tests read site.requests
                return

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                site.requests.append(("GET", path, 0))
                if path == "/favicon.ico":  # what a browser asks for on its own: no console error for it
                    self._send(204, {}, b"")
                    return
                target = site.file_for(path)
                if target is None:
                    self._send(404, {"Content-Type": "text/plain"}, b"not found")
                    return
                kind = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self._send(200, {"Content-Type": kind}, target.read_bytes())

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                site.requests.append(("POST", path, len(body)))
                handler = site.routes.get(path)
                if handler is None:
                    self._send(404, {"Content-Type": "text/plain"}, b"no such route")
                    return
                status, headers, answer = handler(body, {k: v for k, v in self.headers.items()})
                self._send(status, headers, answer)

        self.server = ThreadingHTTPServer((HOST, 0), Handle)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="static-site", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def json_route(answer: Callable[[dict[str, Any], dict[str, str]], Any]) -> Handler:
    """A route that parses the JSON body, and answers 200 with `answer(body, headers)` as JSON."""

    def handle(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps(answer(json.loads(body), headers)).encode()

    return handle


class PageFailed(AssertionError):
    """A page reported an error, or never finished; carries what its console said."""


class Chromium:
    """One headless Chromium (a fresh profile), pages that collect their console errors."""

    def __init__(self, executable: str) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            # Playwright starts each launch with a fresh temporary profile (its own --user-data-dir)
            self.browser = self._playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        except Exception:
            self._playwright.stop()
            raise
        self.version = self.browser.version
        self.errors: dict[int, list[str]] = {}

    def open(self, url: str) -> Any:
        """A new page (its own context: fresh storage) at `url`; console errors go to `errors_of(page)`."""
        context = self.browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        self.errors[id(page)] = errors
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.goto(url)
        return page

    def errors_of(self, page: Any) -> list[str]:
        return self.errors.get(id(page), [])

    def wait_result(self, page: Any, timeout: float = 120.0) -> Any:
        """Wait until the page sets `window.__sei_done`, then return `window.__sei_result`; a page that sets
        `window.__sei_error` instead, or does not finish in `timeout` seconds, raises PageFailed."""
        try:
            page.wait_for_function("() => window.__sei_done === true || window.__sei_error !== undefined",
                                   timeout=timeout * 1000)
        except Exception as exc:
            raise PageFailed(f"the page did not finish in {timeout} s ({type(exc).__name__}); "
                             f"console errors: {self.errors_of(page)}") from None
        error = page.evaluate("() => window.__sei_error")
        if error is not None:
            raise PageFailed(f"the page failed: {error}; console errors: {self.errors_of(page)}")
        return page.evaluate("() => window.__sei_result")

    @staticmethod
    def screenshot(page: Any, path: Path) -> Path:
        """Save a full-page PNG of `page` at `path` (folders made as needed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture() -> Iterator[Chromium]:
    """One headless Chromium per test module (`make chromium` installs it)."""
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no Chromium (run `make chromium`, or set SEI_CHROMIUM to its path)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed (the test extra pins it)")
    browser = Chromium(executable)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module", name="site")
def site_fixture() -> Iterator[StaticSite]:
    """A static site on 127.0.0.1 serving the JS client's folder (clients/js: src/, test/, node_modules/) at /sei/
    and node-seal's dist/ at /node-seal/. A page maps the bare imports with IMPORT_MAP."""
    if not (NODE_SEAL / "index_throws.js").is_file():
        pytest.skip("the JS client's node-seal is not installed (run `make js-client`)")
    site = StaticSite()
    site.mount("/sei/", JS_CLIENT)
    site.mount("/node-seal/", NODE_SEAL)
    site.start()
    try:
        yield site
    finally:
        site.stop()
