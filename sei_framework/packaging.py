"""Ship the distributions a service needs that no package index has, as wheels (for any remote deploy target).

`sei-framework` itself is not on PyPI, and third-party plugins may be installed from a local
folder. A build's requirement whose distribution was installed from a local folder (pip's
`direct_url.json` says `file://...`) is built into a wheel with `pip wheel --no-deps`, from a
clean copy of that folder (so stale `build/` output never leaks into the wheel). The wheel's
name carries a build tag made from its contents, so an upload of changed code never collides
with an older wheel of the same version. Every other requirement stays a plain requirement.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import DeployError

__all__ = ["Shipment", "ship_local_distributions", "distribution_name", "local_source"]

IGNORED = shutil.ignore_patterns(".*", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", "node_modules")


@dataclass
class Shipment:
    """Requirements an index can satisfy, and wheels that must travel with the deployment."""

    index_requirements: list[str] = field(default_factory=list)
    wheels: list[Path] = field(default_factory=list)


def distribution_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise DeployError(f"cannot read the requirement {requirement!r}")
    return match.group(1)


def local_source(name: str) -> Path | None:
    """The folder or wheel file `name` was installed from, when it was installed from a local path.

    Every metadata folder of that name on sys.path is asked (a stale `*.egg-info` in the working
    folder can shadow the installed one), and the installed one's `direct_url.json` decides.
    """
    for dist in distributions(name=name):
        text = dist.read_text("direct_url.json")
        if text:
            url = json.loads(text).get("url", "")
            return Path(unquote(urlsplit(url).path)) if url.startswith("file://") else None
    return None


def _content_tag(wheel: Path) -> str:
    """A build tag from the wheel's member names and bytes (zip timestamps excluded): same code, same tag."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(info.filename.encode() + b"\0" + archive.read(info) + b"\0")
    return "0" + digest.hexdigest()[:12]


def _tagged(wheel: Path, dest: Path) -> Path:
    name, version, *rest = wheel.name[: -len(".whl")].split("-")
    tags = rest[-3:]  # python, abi, platform (an existing build tag is replaced)
    target = dest / f"{name}-{version}-{_content_tag(wheel)}-{'-'.join(tags)}.whl"
    shutil.copyfile(wheel, target)
    return target


def _build_wheel(name: str, source: Path, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="sei-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=IGNORED)
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(copy)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        built = sorted(out.glob("*.whl")) if out.exists() else []
        if result.returncode != 0 or len(built) != 1:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-10:])
            raise DeployError(f"cannot build a wheel of {name} from {source}:\n{tail}")
        return _tagged(built[0], dest)


def ship_local_distributions(requirements: list[str], dest: Path) -> Shipment:
    """Split `requirements` into index requirements and wheels written into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shipment = Shipment()
    for requirement in requirements:
        name = distribution_name(requirement)
        source = local_source(name)
        if source is None:
            shipment.index_requirements.append(requirement)
        elif source.is_dir():
            shipment.wheels.append(_build_wheel(name, source, dest))
        elif source.is_file() and source.suffix == ".whl":
            shipment.wheels.append(_tagged(source, dest))
        else:
            raise DeployError(
                f"{name} was installed from {source}, which is gone; reinstall it, or publish it to a package index"
            )
    return shipment
