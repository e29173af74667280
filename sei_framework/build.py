"""Render score_template and a resolved config into a build folder that any target can run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any

from .config import ResolvedConfig, ResolvedModel
from .container import write_container_files
from .errors import BuildError, SeiError
from .limits import check_key_limits, model_max_rows
from .plugins import SeiPlugins
from .state import state_requirements

__all__ = ["MANIFEST", "Build", "build", "framework_version", "model_dir_from_environment"]

MANIFEST = "sei_build.json"
ENTRY_SCRIPTS = ("score.py", "batch_score.py")
DISTRIBUTION = "sei-framework"


def framework_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


@dataclasses.dataclass(frozen=True)
class Build:
    """A build folder: score.py and batch_score.py, the resolved config (manifest), model files, requirements,
    and a container image's Dockerfile and Kubernetes manifest (`container`)."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Build:
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise BuildError(f"{path} is not a SEI build folder ({MANIFEST}: {exc})") from None
        return cls(path, manifest)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def score_script(self) -> Path:
        return self.path / "score.py"

    @property
    def models_dir(self) -> Path:
        return self.path / "models"

    @property
    def requirements(self) -> list[str]:
        return list(self.manifest["requirements"])

    @property
    def max_rows(self) -> int:
        """The config's rows per request (`limits.max_rows_per_request`)."""
        return int(self.manifest["limits"]["max_rows_per_request"])

    def model_rows(self) -> dict[str, int]:
        """Each model's rows per request, as the build fitted them; a build made before per-model
        limits has none, and the config's applies."""
        return {
            spec["name"]: int(spec.get("limits", {}).get("max_rows_per_request", self.max_rows))
            for spec in self.manifest["models"]
        }


def model_dir_from_environment() -> Path | None:
    """Where Azure ML mounted a build's model files: the first `models` folder under AZUREML_MODEL_DIR;
    None outside Azure ML (the build's own `models/` then serves)."""
    azureml_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not azureml_dir:
        return None
    found = sorted(Path(azureml_dir).glob("**/models"))
    return found[0] if found else None


def _requirements(resolved: ResolvedConfig, plugins: SeiPlugins) -> list[str]:
    """sei-framework, the pip requirements of the adapters and transport, and third-party plugin dists."""
    reqs = [f"{DISTRIBUTION}=={framework_version()}"]
    for cls in [m.adapter for m in resolved.models] + [resolved.transport]:
        reqs += cls.requirements
    reqs += state_requirements(resolved.config.state.model_dump())
    for info in plugins.plugin_infos():
        if info.name in resolved.plugins and info.distribution and info.distribution != DISTRIBUTION:
            reqs.append(f"{info.distribution}=={info.version}")
    return list(dict.fromkeys(reqs))


def build(resolved: ResolvedConfig, out: str | Path, plugins: SeiPlugins) -> Build:
    """Write the build folder `out` (replacing an earlier build there) and return it.

    The build is written into a sibling temporary folder and renamed into place: a build that fails
    leaves the previous build as it was (or nothing), never a half-written folder, and no temporary
    folder behind.
    """
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BuildError(f"{out} exists and is not a SEI build folder; refusing to overwrite it")
    if out.exists() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise BuildError(f"{out} exists and is not a SEI build folder; refusing to overwrite it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.building-{uuid.uuid4().hex[:12]}"
        staging.mkdir()  # unique, and with the umask's permissions (mkdtemp's 0700 would hide it)
    except OSError as exc:
        raise BuildError(f"cannot write a build next to {out}: {exc.strerror or exc}") from None
    try:
        manifest = _render(resolved, staging, plugins)
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Build(out, manifest)


def _replace(new: Path, out: Path) -> None:
    """Put the folder `new` at `out`: the old build is renamed aside, the new one in, the old removed;
    if the new one cannot be moved in, the old one is put back."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fetch(model: ResolvedModel, folder: Path) -> Path:
    """The model's local file or folder: its path, or what its model source fetches into `folder`."""
    if model.model_source is None:
        return Path(model.source)
    uri, scheme = str(model.source), model.model_source.name
    try:
        path = Path(model.model_source.fetch(uri, folder))
    except SeiError:
        raise
    except Exception as exc:
        raise BuildError(
            f"model {model.config.name!r}: model source {scheme!r} could not fetch {uri}: {type(exc).__name__}: {exc}"
        ) from exc
    if not path.exists():
        raise BuildError(f"model {model.config.name!r}: model source {scheme!r} fetched nothing for {uri}")
    return path


def _render(resolved: ResolvedConfig, out: Path, plugins: SeiPlugins) -> dict[str, Any]:
    """Write score.py, the model files, the manifest, requirements.txt and the container files into `out`."""
    models_dir = out / "models"
    models_dir.mkdir()
    for script in ENTRY_SCRIPTS:  # online (azmlinfsrv) and batch (Azure ML batch endpoints)
        (out / script).write_bytes(files("score_template").joinpath(script).read_bytes())
    config = resolved.config
    models = []
    for index, model in enumerate(resolved.models):
        dest = models_dir / model.config.name
        dest.mkdir()
        failed = f"model {model.config.name!r}: adapter {model.adapter.name!r} failed"
        with tempfile.TemporaryDirectory(prefix="sei-model-") as fetched:  # a fetched model is removed after prepare
            source = _fetch(model, Path(fetched))
            try:
                metadata = model.adapter.prepare(source, model.options, dest)
                size = model.adapter.request_size(metadata)
            except SeiError:
                raise
            except Exception as exc:
                raise BuildError(f"{failed}: {type(exc).__name__}: {exc}") from exc
        if size is not None and not resolved.transport.keys_in_requests:
            size = dataclasses.replace(size, public_key_bytes=0)  # the keys reach the service another way
        check_key_limits(model.config.name, size, config.limits)
        rows = model_max_rows(
            model.config.name, index, size, config.limits, model.config.limits.max_rows_per_request
        )
        models.append(
            {
                "name": model.config.name,
                "adapter": model.adapter.name,
                "options": model.options.model_dump(mode="json"),
                "metadata": metadata,
                "limits": {"max_rows_per_request": rows},
            }
        )
    requirements = _requirements(resolved, plugins)
    manifest = {
        "name": config.name,
        "sei_version": framework_version(),
        "plugins": resolved.plugins,
        "models": models,
        "key_transport": {"name": resolved.transport.name, "options": resolved.transport_options.model_dump(mode="json")},
        "deploy": {"target": resolved.target.name, "options": resolved.target_options.model_dump(mode="json")},
        "limits": config.limits.model_dump(mode="json"),
        "state": config.state.model_dump(mode="json"),
        "requirements": requirements,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    write_container_files(out, config.name, framework_version(), requirements)
    return manifest
