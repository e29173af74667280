"""Deploy target `local`: the build served by azmlinfsrv on 127.0.0.1, in a private state folder."""

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

from sei_framework import Build, ConfigPath, DeployError, DeployTarget, Endpoint, PluginOptions, sei_home

from .gunicorn_conf import render
from .logs import open_log, private_dir, rotate

__all__ = ["HOST", "LocalOptions", "LocalTarget", "free_port"]

HOST = "127.0.0.1"


class LocalOptions(PluginOptions):
    port: int = 0
    """Port on 127.0.0.1; 0 picks a free one."""
    workers: int = 1
    startup_timeout: float = 120.0
    state_dir: ConfigPath | None = None
    """Where pid files and logs go (default: $SEI_HOME/local); relative to the config file."""
    auth: bool = False
    """Require `Authorization: Bearer <token>` on every request but the `/` health probe."""
    token_env: str = Field(default="SEI_LOCAL_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the token (read by `sei deploy` and by the server)."""
    python: ConfigPath | None = None
    """The interpreter whose azmlinfsrv serves (default: this one), a path relative to the config file;
    e.g. a venv made from a dry run's requirements, to try the environment a cloud target would build."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LocalTarget(DeployTarget):
    """Runs the build in the Azure ML inference server (`azmlinfsrv`), the runtime of ACI containers."""

    name: ClassVar[str] = "local"
    Options = LocalOptions
    options: LocalOptions

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
        """The command, its private working folder holding gunicorn.conf.py, its environment and port."""
        self._headers()  # fail before starting anything
        port = self.options.port or free_port()
        root = self.options.state_dir or sei_home() / "local"
        if not root.exists():
            private_dir(root)
        run_dir = private_dir(self._run_dir(build.name))
        token_env = self.options.token_env if self.options.auth else None
        conf = run_dir / "gunicorn.conf.py"
        conf.write_text(render(build.name, f"{HOST}:{port}", str(build.path.resolve()), token_env))
        conf.chmod(0o600)
        env = {**os.environ, "AML_APP_ROOT": str(build.path.resolve())}
        return self.command(build, port), run_dir, env, port

    def deploy(self, build: Build) -> Endpoint:
        self.delete(build.name)
        command, run_dir, env, port = self._prepare(build)
        log_path = run_dir / "server.log"
        rotate(log_path)
        with open_log(log_path) as log:
            process = subprocess.Popen(
                command, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        state = {"pid": process.pid, "port": port, "build": str(build.path.resolve()), "log": str(log_path)}
        state_file = run_dir / "state.json"
        state_file.write_text(json.dumps(state))
        state_file.chmod(0o600)
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
