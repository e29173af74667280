"""Deploy target `local`: the build served by azmlinfsrv on this machine (127.0.0.1 unless `host` says
otherwise, and then only with auth), in a private state folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import requests

from sei_framework import (
    CORS_ENV,
    Build,
    DeployError,
    DeploymentStatus,
    DeployTarget,
    Endpoint,
    cors_environment,
    require_extra,
    sei_home,
)

from .address import HOST, connect_host, free_port, port_is_free, url_host
from .gunicorn_conf import render
from .logs import open_log, private_dir, rotate
from .options import LocalOptions
from .process import command_line, identity

__all__ = ["HOST", "LocalOptions", "LocalTarget", "free_port"]


class LocalTarget(DeployTarget):
    """Runs the build in the Azure ML inference server (`azmlinfsrv`), the runtime of ACI containers."""

    name: ClassVar[str] = "local"
    Options = LocalOptions
    options: LocalOptions

    def _run_dir(self, name: str) -> Path:
        return (self.options.state_dir or sei_home() / "local") / name

    def _base_url(self, port: int) -> str:
        return f"http://{url_host(connect_host(self.options.host))}:{port}"

    def _port(self, name: str) -> int:
        """The configured port; for 0, the port of this deployment's last run if it is free, else a free one."""
        if self.options.port:
            return self.options.port
        try:
            last = int((self._run_dir(name) / "port").read_text())
        except (OSError, ValueError):
            last = 0
        if 0 < last < 65536 and port_is_free(self.options.host, last):
            return last
        return free_port(self.options.host)

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
        # azmlinfsrv is required; without gevent it serves on sync workers, with a warning in its log
        modules = ["azureml_inference_server_http", *(["flask_cors"] if self.options.cors_origins else [])]
        require_extra("serve", "the local target", DeployError, self.options.python, modules)
        port = self._port(build.name)
        root = self.options.state_dir or sei_home() / "local"
        if not root.exists():
            private_dir(root)
        run_dir = private_dir(self._run_dir(build.name))
        (run_dir / "port").write_text(str(port))  # kept after a delete: the next deploy of `port: 0` reuses it
        token_env = self.options.token_env if self.options.auth else None
        conf = run_dir / "gunicorn.conf.py"
        bind = f"{url_host(self.options.host)}:{port}"
        page = self._page_dir()
        conf.write_text(render(build.name, bind, str(build.path.resolve()), token_env, page))
        conf.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k != CORS_ENV}  # only the config's origins, never inherited
        env |= {"AML_APP_ROOT": str(build.path.resolve()), **cors_environment(self.options.cors_origins)}
        return self.command(build, port), run_dir, env, port

    def _page_dir(self) -> str | None:
        """The page folder, resolved; DeployError when it has no index.html (not built: `make page`)."""
        if self.options.page is None:
            return None
        folder = Path(self.options.page).resolve()
        if not (folder / "index.html").is_file():
            raise DeployError(f"page: {folder} has no index.html; build the page there first (make page)")
        return str(folder)

    def deploy(self, build: Build) -> Endpoint:
        self.delete(build.name)
        command, run_dir, env, port = self._prepare(build)
        log_path = run_dir / "server.log"
        rotate(log_path)
        with open_log(log_path) as log:
            process = subprocess.Popen(
                command, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        started = identity(process.pid)  # the process group we may signal later is this process's only
        state = {
            "pid": process.pid, "started": started, "host": self.options.host, "port": port,
            "build": str(build.path.resolve()), "log": str(log_path),
        }  # fmt: skip
        state_file = run_dir / "state.json"
        state_file.write_text(json.dumps(state))
        state_file.chmod(0o600)
        self._wait_healthy(process, port, log_path, started)
        return Endpoint(f"{self._base_url(port)}/score", headers=self._headers())

    def _wait_healthy(self, process: subprocess.Popen, port: int, log_path: Path, started: str | None) -> None:
        deadline = time.monotonic() + self.options.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
                raise DeployError("azmlinfsrv exited while starting:\n" + "\n".join(tail))
            try:
                if requests.get(f"{self._base_url(port)}/", timeout=2).status_code == 200:
                    if self._init_failed(log_path):
                        self._stop(process.pid, started)
                        raise DeployError(f"score.py init() failed; see {log_path}")
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self._stop(process.pid, started)
        raise DeployError(f"azmlinfsrv did not become healthy within {self.options.startup_timeout:g} s; see {log_path}")

    @staticmethod
    def _init_failed(log_path: Path) -> bool:
        return "Encountered Exception" in log_path.read_text(errors="replace")

    def endpoint(self, name: str) -> Endpoint | None:
        """The endpoint of the running deployment `name`, if any."""
        state = self._state(name)
        return Endpoint(f"{self._base_url(state['port'])}/score", headers=self._headers()) if state else None

    def _saved_state(self, name: str) -> dict | None:
        try:
            state = json.loads((self._run_dir(name) / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _state(self, name: str) -> dict | None:
        """The saved state of `name` while the process it names is still the one deploy started, else None."""
        state = self._saved_state(name)
        if state is None:
            return None
        try:
            pid = state["pid"]
            if type(pid) is not int or pid <= 1:
                return None
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state if _is_ours(state) else None

    def status(self, name: str) -> DeploymentStatus:
        """running (the pid lives), stopped (it died) or not deployed; the port, log and build folder."""
        run_dir = self._run_dir(name)
        saved = self._saved_state(name)
        log = Path(saved.get("log", run_dir / "server.log")) if saved else run_dir / "server.log"
        if saved is None:
            details = {"log": str(log)} if log.exists() else {}
            port = (run_dir / "port").read_text().strip() if (run_dir / "port").exists() else None
            details |= {"last_port": port} if port else {}
            return DeploymentStatus("not deployed", details=details)
        alive = self._state(name) is not None
        uri = f"http://{url_host(connect_host(str(saved.get('host', HOST))))}:{saved.get('port')}/score"
        details = {
            "pid": f"{saved.get('pid')} ({'alive' if alive else 'not alive'})",
            "host": str(saved.get("host", HOST)),
            "port": str(saved.get("port")),
            "log": str(log),
            "build": str(saved.get("build")),
        }
        if alive:
            try:
                answering = requests.get(uri.removesuffix("score"), timeout=2).status_code == 200
            except requests.RequestException:
                answering = False
            details["health"] = "answering" if answering else "not answering"
        return DeploymentStatus("running" if alive else "stopped", scoring_uri=uri if alive else None, details=details)

    def delete(self, name: str) -> bool:
        state = self._state(name)
        (self._run_dir(name) / "state.json").unlink(missing_ok=True)
        if state is None:
            return False
        # a state file of an earlier version has no start time: _state checked its command line just now
        self._stop(state["pid"], state.get("started") or identity(state["pid"]))
        return True

    @staticmethod
    def _stop(pid: int, started: str | None) -> None:
        """SIGTERM, then SIGKILL after 15 s, to the process group of `pid`, each sent only while the
        group is still ours: its leader is the process started at `started`, or the leader is gone
        and members remain (a PID is not reused while it names a live process group)."""
        if not _group_is_ours(pid, started):
            return
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
        if _group_is_ours(pid, started):
            os.killpg(pid, signal.SIGKILL)

    def exec_foreground(self, build: Build) -> None:
        """Become the server of `build` (os.execve): for a container's command, where signals must reach it."""
        command, run_dir, env, port = self._prepare(build)
        print(f"serving {build.name} at {self._base_url(port)}/score", flush=True)
        os.chdir(run_dir)
        os.execve(command[0], command, env)

    def serve(self, build: Build) -> None:
        command, run_dir, env, port = self._prepare(build)
        print(f"serving {build.name} at {self._base_url(port)}/score (Ctrl+C stops)", flush=True)
        if self.options.page is not None:
            print(f"the page: {self._base_url(port)}/page/", flush=True)
        try:
            subprocess.run(command, cwd=run_dir, env=env, check=False)
        except KeyboardInterrupt:
            pass


def _is_ours(state: dict) -> bool:
    """Whether the PID in `state` still names the server deploy started: the same start time, or, for a
    state file written before start times were recorded, a command line serving the state's build."""
    pid = state["pid"]
    if state.get("started") is not None:
        return identity(pid) == state["started"]
    command = command_line(pid) or ""
    return "azureml_inference_server_http" in command and str(state.get("build")) in command


def _group_is_ours(pid: int, started: str | None) -> bool:
    """The leader is the process started at `started`, or it is gone and its group lives on."""
    current = identity(pid)
    if current is None:
        try:
            os.killpg(pid, 0)
        except OSError:
            return False
        return True
    return started is not None and current == started
