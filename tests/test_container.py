"""Every build is a container image's context: Dockerfile, image-requirements.txt, kubernetes.yaml.

No Docker engine runs here, so the image is tried as far as this machine allows: its requirements
installed into a fresh venv (with sei-framework's wheel in the build's wheels/, as the Dockerfile's
first comment says), then the Dockerfile's own command run by that venv, paths mapped from the image
to the build folder, and called with the token from the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from fresh_env import fresh_venv, pip_install

from sei_framework import Client, Endpoint
from sei_framework.container import IMAGE_PORT, IMAGE_ROOT, TOKEN_ENV, entry_command
from sei_framework.packaging import IGNORED

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "sei-container-token-51c0e9a7d2"


def dockerfile(build: Path) -> tuple[str, list[str], list[str]]:
    """The base image, the RUN lines and the CMD of the build's Dockerfile."""
    lines = (build / "Dockerfile").read_text().replace("\\\n", " ").splitlines()  # continued lines joined
    [base] = [line.split()[1] for line in lines if line.startswith("FROM ")]
    runs = [line for line in lines if line.startswith("RUN ")]
    [command] = [json.loads(line.removeprefix("CMD ")) for line in lines if line.startswith("CMD ")]
    return base, runs, command


def test_every_build_has_a_dockerfile_and_a_kubernetes_manifest(make_deployment, tmp_path):
    build = make_deployment(name="my_svc").build(tmp_path / "build")
    base, runs, command = dockerfile(build.path)
    assert base == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert command == entry_command() == [
        "python", "-m", "sei_deploy_local", IMAGE_ROOT, "--host", "0.0.0.0", "--port", str(IMAGE_PORT),
        "--auth", "--token-env", TOKEN_ENV,
    ]  # fmt: skip
    assert f"COPY . {IMAGE_ROOT}" in (build.path / "Dockerfile").read_text()
    assert runs[0].startswith(f"RUN pip install --no-cache-dir --find-links {IMAGE_ROOT}/wheels -r {IMAGE_ROOT}/")
    assert "USER sei" in (build.path / "Dockerfile").read_text().splitlines()
    requirements = (build.path / "image-requirements.txt").read_text().split()
    assert requirements[0] == "sei-framework[serve]==0.1.0" and requirements[1:] == build.requirements[1:]
    deployment, service = yaml.safe_load_all((build.path / "kubernetes.yaml").read_text())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "my-svc"  # DNS-1123: no underscore
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "sei-my_svc:0.1.0" and container["ports"][0]["containerPort"] == IMAGE_PORT
    assert container["env"] == [
        {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": "my-svc-token", "key": "token"}}}
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": IMAGE_PORT}
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"][0]["targetPort"] == IMAGE_PORT
    header = (build.path / "kubernetes.yaml").read_text().split("apiVersion")[0]
    assert "kubectl create secret generic my-svc-token --from-file=token=/dev/stdin" in header
    assert "kubectl apply -f kubernetes.yaml" in header


def in_image(path: str, build: Path) -> str:
    """A path of the image mapped to where the image's build folder is here."""
    return str(build / Path(path).relative_to(IMAGE_ROOT)) if path.startswith(IMAGE_ROOT) else path


def test_the_image_requirements_install_and_its_command_serves(make_deployment, model_files, tmp_path):
    build = make_deployment(name="image-svc").build(tmp_path / "build").path
    source = tmp_path / "clone"  # the documented `pip wheel --no-deps -w wheels PATH/TO/SEI-CLONE`, from a clean copy
    shutil.copytree(ROOT, source, ignore=IGNORED)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")}
    wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(build / "wheels"), str(source)]
    subprocess.run(wheel, check=True, env=env, capture_output=True)
    _, runs, command = dockerfile(build)
    install = runs[0].removeprefix("RUN pip install ").split(" && ")[0].split()
    python = fresh_venv(tmp_path / "image-env")
    pip_install(python, [in_image(arg, build) for arg in install], cwd=build)  # then pip check

    port = free_port()  # stands for `docker run -p PORT:5001`
    argv = [in_image(arg, build) for arg in command]
    argv[argv.index("--port") + 1] = str(port)
    assert argv[0] == "python"
    home = tmp_path / "home"
    with open(tmp_path / "image.log", "wb") as log:
        server = subprocess.Popen(
            [str(python), *argv[1:]], env={**env, TOKEN_ENV: TOKEN, "SEI_HOME": str(home)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        )  # fmt: skip
    try:
        wait_healthy(server, port, tmp_path / "image.log")
        uri = f"http://127.0.0.1:{port}/score"  # it listens on 0.0.0.0; loopback reaches it
        assert requests.post(uri, json={"op": "describe"}, timeout=10).status_code == 401
        client = Client(Endpoint(uri, {"Authorization": f"Bearer {TOKEN}"}))
        _, model, X = model_files["diabetes"]
        np.testing.assert_allclose(client.predict("diabetes", X[:3]).predictions, model.predict(X[:3]), atol=1e-3)
        [conf] = (home / "local" / "image-svc").glob("gunicorn.conf.py")
        assert f"0.0.0.0:{port}" in conf.read_text() and TOKEN not in conf.read_text()
        assert server.poll() is None, (tmp_path / "image.log").read_text(errors="replace")[-3000:]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert TOKEN not in (tmp_path / "image.log").read_text(errors="replace")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail("the image's command exited:\n" + log.read_text(errors="replace")[-3000:])
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    pytest.fail("the image's command did not answer within 120 s:\n" + log.read_text(errors="replace")[-3000:])
