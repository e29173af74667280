"""The container image files of a build: a Dockerfile, its pip requirements, and a Kubernetes manifest.

Any build folder is a Docker build context. The image installs the build's requirements with the
`serve` extra and serves the build like the `local` target does (azmlinfsrv behind SEI's request
guard), on 0.0.0.0 with bearer-token auth always on: a container is meant to be reached from other
machines. The token comes from the environment (`SEI_LOCAL_TOKEN`; a Kubernetes Secret), never from
the image. sei-framework is not on a package index: a wheel of it in the build's `wheels/` folder
satisfies the requirement (docs/getting-started.md).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CONTAINER_FILES", "IMAGE_PORT", "IMAGE_ROOT", "TOKEN_ENV", "entry_command", "write_container_files"]

IMAGE_ROOT = "/srv/sei/build"
"""Where the build folder lands in the image."""
IMAGE_PORT = 5001
TOKEN_ENV = "SEI_LOCAL_TOKEN"
CONTAINER_FILES = ("Dockerfile", "image-requirements.txt", "kubernetes.yaml")

DOCKERFILE = """\
# Written by SEI: an image that serves the build {name!r} (this folder) on port {port}, auth always on.
#   pip wheel --no-deps -w wheels PATH/TO/SEI-CLONE      # once: sei-framework's wheel (no index has it)
#   docker build -t {image} .
#   docker run --rm -p {port}:{port} -e {token_env} {image}   # the token clients must send, from your shell
FROM python:{python}-slim
COPY . {root}
RUN pip install --no-cache-dir --find-links {root}/wheels -r {root}/image-requirements.txt \\
 && useradd --system --no-create-home sei && mkdir -p /srv/sei/home && chown sei /srv/sei/home
USER sei
ENV SEI_HOME=/srv/sei/home PYTHONUNBUFFERED=1
EXPOSE {port}
CMD {command}
"""


def entry_command(root: str = IMAGE_ROOT, port: int = IMAGE_PORT) -> list[str]:
    """The image's command: the built-in `local` target serving the build folder `root` in the foreground."""
    return [
        "python", "-m", "sei_deploy_local", root, "--host", "0.0.0.0", "--port", str(port),
        "--auth", "--token-env", TOKEN_ENV,
    ]  # fmt: skip


def image_name(name: str, version: str) -> str:
    """A Docker image reference for the deployment `name` (lower case, allowed characters only)."""
    return f"sei-{re.sub(r'[^a-z0-9_.-]', '-', name.lower())}:{re.sub(r'[^A-Za-z0-9_.-]', '-', version)}"


def image_requirements(requirements: list[str]) -> list[str]:
    """The build's requirements with the `serve` extra on sei-framework (azmlinfsrv and gevent)."""
    out = []
    for requirement in requirements:
        match = re.fullmatch(r"sei-framework(\[[^\]]*\])?(.*)", requirement)
        if match:
            extras = {e.strip() for e in (match.group(1) or "[]")[1:-1].split(",") if e.strip()} | {"serve"}
            requirement = f"sei-framework[{','.join(sorted(extras))}]{match.group(2)}"
        out.append(requirement)
    return out


def kubernetes_name(name: str) -> str:
    """`name` as a Kubernetes object name (DNS-1123: no underscores)."""
    return name.replace("_", "-")


def kubernetes_manifest(name: str, image: str, port: int = IMAGE_PORT) -> list[dict[str, Any]]:
    """A Deployment and a Service; the token from the Secret NAME-token (key `token`), made apart."""
    name = kubernetes_name(name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "sei"}
    probe = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "sei",
        "image": image,
        "ports": [{"containerPort": port, "name": "http"}],
        "env": [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": f"{name}-token", "key": "token"}}}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": port}]},
    }
    return [deployment, service]


MANIFEST_HEADER = """\
# Written by SEI: the build {name!r} on Kubernetes, a Deployment and a Service on port {port}.
# Push the image (Dockerfile beside this file) where the cluster pulls from and set `image:` to it.
# The bearer token clients send comes from the Secret {name}-token, made apart (never in this file):
#   printf %s "${token_env}" | kubectl create secret generic {name}-token --from-file=token=/dev/stdin
#   kubectl apply -f kubernetes.yaml
# The Service is ClusterIP: reach it in the cluster, or expose it (an Ingress with TLS; docs/getting-started.md).
"""


def write_container_files(out: Path, name: str, version: str, requirements: list[str]) -> list[Path]:
    """Write the Dockerfile, image-requirements.txt and kubernetes.yaml of the build `name` into `out`."""
    image = image_name(name, version)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    (out / "image-requirements.txt").write_text("\n".join(image_requirements(requirements)) + "\n")
    fields = {"name": name, "image": image, "python": python, "root": IMAGE_ROOT, "port": IMAGE_PORT}
    dockerfile = DOCKERFILE.format(**fields, token_env=TOKEN_ENV, command=json.dumps(entry_command()))
    (out / "Dockerfile").write_text(dockerfile)
    header = MANIFEST_HEADER.format(name=kubernetes_name(name), port=IMAGE_PORT, token_env=TOKEN_ENV)
    documents = yaml.safe_dump_all(kubernetes_manifest(name, image), sort_keys=False)
    (out / "kubernetes.yaml").write_text(header + documents)
    return [out / f for f in CONTAINER_FILES]
