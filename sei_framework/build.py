"""Render score_template and a resolved config into a build folder that any target can run."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any

from .config import ResolvedConfig
from .errors import BuildError, SeiError
from .plugins import SeiPlugins
from .state import state_requirements

__all__ = ["MANIFEST", "Build", "build", "framework_version"]

MANIFEST = "sei_build.json"
DISTRIBUTION = "sei-framework"


def framework_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Build:
    """A build folder: score.py, the resolved config (manifest), model files, requirements."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Build:
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
    """Write the build folder `out` (replacing an earlier build there) and return it."""
    out = Path(out)
    if out.exists():
        if not (out / MANIFEST).exists() and any(out.iterdir()):
            raise BuildError(f"{out} exists and is not a SEI build folder; refusing to overwrite it")
        shutil.rmtree(out)
    models_dir = out / "models"
    models_dir.mkdir(parents=True)
    (out / "score.py").write_bytes(files("score_template").joinpath("score.py").read_bytes())
    models = []
    for model in resolved.models:
        dest = models_dir / model.config.name
        dest.mkdir()
        try:
            metadata = model.adapter.prepare(model.source, model.options, dest)
        except SeiError:
            raise
        except Exception as exc:
            raise BuildError(
                f"model {model.config.name!r}: adapter {model.adapter.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        models.append(
            {
                "name": model.config.name,
                "adapter": model.adapter.name,
                "options": model.options.model_dump(mode="json"),
                "metadata": metadata,
            }
        )
    config = resolved.config
    manifest = {
        "name": config.name,
        "sei_version": framework_version(),
        "plugins": resolved.plugins,
        "models": models,
        "key_transport": {"name": resolved.transport.name, "options": resolved.transport_options.model_dump(mode="json")},
        "deploy": {"target": resolved.target.name, "options": resolved.target_options.model_dump(mode="json")},
        "limits": config.limits.model_dump(mode="json"),
        "state": config.state.model_dump(mode="json"),
        "requirements": _requirements(resolved, plugins),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "requirements.txt").write_text("\n".join(manifest["requirements"]) + "\n")
    return Build(out, manifest)
