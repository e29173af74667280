"""Built-in plugin: deploy target `local`, the build served by azmlinfsrv on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import requests
from pydantic import Field

from sei_framework import Build, DeployError, DeployTarget, Endpoint, PluginOptions, hookimpl, sei_home

__all__ = ["LocalOptions", "LocalTarget", "sei_register_deploy_targets"]

HOST = "127.0.0.1"
# azmlinfsrv always binds 0.0.0.0; gunicorn's on_starting hook (read from the working folder) confines it.
GUNICORN_CONF = '''"""Written by SEI: bind azmlinfsrv to the loopback interface only."""


def on_starting(server):
    server.cfg.set("bind", ["{host}:{port}"])
'''
# azmlinfsrv hands run() only the body, so the bearer token is checked by WSGI middleware that each
# gunicorn worker wraps around the app. The token is read from the environment, never from this file.
GUNICORN_AUTH = '''

import hmac
import json
import os

TOKEN_ENV = {token_env!r}
UNAUTHORIZED = json.dumps(
    {{"error": {{"code": "unauthorized", "message": "missing or wrong Authorization bearer token"}}}}
).encode()


def _require_token(app, expected):
    def guarded(environ, start_response):
        if environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return app(environ, start_response)  # health probe stays open
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if expected and hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response("401 UNAUTHORIZED", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(UNAUTHORIZED))),
            ("WWW-Authenticate", "Bearer"),
        ])
        return [UNAUTHORIZED]

    return guarded


def post_worker_init(worker):
    token = os.environ.get(TOKEN_ENV, "")
    expected = ("Bearer " + token).encode("latin-1", "replace") if token else b""  # no token: refuse all
    worker.wsgi = _require_token(worker.wsgi, expected)
'''


class LocalOptions(PluginOptions):
    port: int = 0
    """Port on 127.0.0.1; 0 picks a free one."""
    workers: int = 1
    startup_timeout: float = 120.0
    state_dir: Path | None = None
    """Where pid files and logs go (default: $SEI_HOME/local)."""
    auth: bool = False
    """Require `Authorization: Bearer <token>` on every request but the `/` health probe."""
    token_env: str = Field(default="SEI_LOCAL_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the token (read by `sei deploy` and by the server)."""
    python: Path | None = None
    """The interpreter whose azmlinfsrv serves (default: this one); e.g. a venv made from a dry
    run's requirements, to try the environment a cloud target would build."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LocalTarget(DeployTarget):
    """Runs the build in the Azure ML inference server (`azmlinfsrv`), the runtime of ACI containers."""

    name: ClassVar[str] = "local"
    Options = LocalOptions
    requirements = ("azureml-inference-server-http",)

    def _run_dir(self, name: str) -> Path:
        return (self.options.state_dir or sei_home() / "local") / name

    def command(self, build: Build, port: int) -> list[str]:
        return [
            str(self.options.python or sys.executable), "-m", "azureml_inference_server_http",
            "--entry_script", str(build.score_script.resolve()),
            "--model_dir", str(build.path.resolve()),
            "--port", str(port),
            "--worker_count", str(self.options.workers),
        ]  # fmt: skip

    def _headers(self) -> dict[str, str]:
        """The auth header clients send; raises DeployError when auth is on and the token is unset."""
        if not self.options.auth:
            return {}
        token = os.environ.get(self.options.token_env, "")
        if not token:
            raise DeployError(
                f"auth is on but the environment variable {self.options.token_env} is not set; "
                "set it to the bearer token clients must send"
            )
        if not token.isascii() or not token.isprintable() or " " in token:
            raise DeployError(f"the token in {self.options.token_env} must be printable ASCII without spaces")
        return {"Authorization": f"Bearer {token}"}

    def _prepare(self, build: Build) -> tuple[list[str], Path, dict[str, str], int]:
        self._headers()  # fail before starting anything
        port = self.options.port or free_port()
        run_dir = self._run_dir(build.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        conf = GUNICORN_CONF.format(host=HOST, port=port)
        if self.options.auth:
            conf += GUNICORN_AUTH.format(token_env=self.options.token_env)
        (run_dir / "gunicorn.conf.py").write_text(conf)
        env = {**os.environ, "AML_APP_ROOT": str(build.path.resolve())}
        return self.command(build, port), run_dir, env, port

    def deploy(self, build: Build) -> Endpoint:
        self.delete(build.name)
        command, run_dir, env, port = self._prepare(build)
        log_path = run_dir / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        state = {"pid": process.pid, "port": port, "build": str(build.path.resolve()), "log": str(log_path)}
        (run_dir / "state.json").write_text(json.dumps(state))
        self._wait_healthy(process, port, log_path)
        return Endpoint(f"http://{HOST}:{port}/score", headers=self._headers())

    def _wait_healthy(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        deadline = time.monotonic() + self.options.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
                raise DeployError("azmlinfsrv exited while starting:\n" + "\n".join(tail))
            try:
                if requests.get(f"http://{HOST}:{port}/", timeout=2).status_code == 200:
                    if self._init_failed(log_path):
                        self._stop(process.pid)
                        raise DeployError(f"score.py init() failed; see {log_path}")
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self._stop(process.pid)
        raise DeployError(f"azmlinfsrv did not become healthy within {self.options.startup_timeout:g} s; see {log_path}")

    @staticmethod
    def _init_failed(log_path: Path) -> bool:
        return "Encountered Exception" in log_path.read_text(errors="replace")

    def endpoint(self, name: str) -> Endpoint | None:
        """The endpoint of the running deployment `name`, if any."""
        state = self._state(name)
        return Endpoint(f"http://{HOST}:{state['port']}/score", headers=self._headers()) if state else None

    def _state(self, name: str) -> dict | None:
        try:
            state = json.loads((self._run_dir(name) / "state.json").read_text())
            os.kill(state["pid"], 0)
        except (OSError, ValueError, KeyError):
            return None
        return state

    def delete(self, name: str) -> bool:
        state = self._state(name)
        (self._run_dir(name) / "state.json").unlink(missing_ok=True)
        if state is None:
            return False
        self._stop(state["pid"])
        return True

    @staticmethod
    def _stop(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)

    def serve(self, build: Build) -> None:
        command, run_dir, env, port = self._prepare(build)
        print(f"serving {build.name} at http://{HOST}:{port}/score (Ctrl+C stops)", flush=True)
        try:
            subprocess.run(command, cwd=run_dir, env=env, check=False)
        except KeyboardInterrupt:
            pass


@hookimpl
def sei_register_deploy_targets(registry):
    registry.register(LocalTarget)
