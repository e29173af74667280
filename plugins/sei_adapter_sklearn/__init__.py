"""Built-in plugin: scikit-learn linear models (and linear pipelines) served on encrypted data.

Each adapter needs only its own backend (`sklearn-eiserver`: encrypted-inference; `sklearn-packed`:
seal-python), so a service installs what its models use: an adapter whose backend is missing is
registered as unavailable, and using it says what to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict

from sei_framework import AdapterClient, ModelAdapter, PluginError, PluginOptions, hookimpl, install_hint

__all__ = ["sei_register_model_adapters"]

ADAPTERS = {"sklearn-eiserver": ("eiserver", "EIServerAdapter"), "sklearn-packed": ("packed", "PackedAdapter")}
EXTRA = "the `sklearn` extra of sei-framework (sei-framework[sklearn])"


@hookimpl
def sei_register_model_adapters(registry: Any) -> None:
    missing = {}
    for name, (module, class_name) in ADAPTERS.items():
        try:
            adapter = getattr(importlib.import_module(f".{module}", __name__), class_name)
        except ModuleNotFoundError as exc:  # this adapter's backend is not installed here
            if (exc.name or __name__).split(".")[0] == __name__:
                raise  # a module of this plugin itself: a broken installation, not a missing backend
            missing[name] = exc.name or module
            continue
        registry.register(adapter)
    if len(missing) == len(ADAPTERS):
        raise PluginError(
            f"the scikit-learn adapters need the `sklearn` extra of sei-framework (`client` on a machine that only "
            f"calls services; not importable: {', '.join(sorted(set(missing.values())))}); add it: "
            f"{install_hint('sklearn')}",
            code="missing_extra",
        )
    for name, module in missing.items():
        registry.register(_unavailable(name, module))


def _unavailable(adapter_name: str, module: str) -> type[ModelAdapter]:
    """A stand-in for an adapter whose backend is missing: any use says what to install."""

    def refuse() -> PluginError:
        return PluginError(
            f"the {adapter_name} adapter needs the Python module {module!r}, which is not installed: it is in "
            f"{EXTRA}; add it: {install_hint('sklearn')}",
            code="missing_extra",
        )

    class AnyOptions(PluginOptions):
        model_config = ConfigDict(extra="allow")

    class Unavailable(ModelAdapter):
        name: ClassVar[str] = adapter_name
        Options = AnyOptions

        @classmethod
        def prepare(cls, source: Path, options: PluginOptions, dest: Path) -> dict[str, Any]:
            raise refuse()

        def __init__(self, model_dir: Path, metadata: dict[str, Any], options: PluginOptions) -> None:
            raise refuse()

        def describe(self) -> dict[str, Any]:
            raise refuse()

        def load_public_keys(self, data: bytes) -> Any:
            raise refuse()

        def predict(self, data: Any, keys: Any) -> Any:
            raise refuse()

        @classmethod
        def client(cls, description: dict[str, Any]) -> AdapterClient:
            raise refuse()

    Unavailable.__qualname__ = Unavailable.__name__ = f"Unavailable[{adapter_name}]"
    return Unavailable
