"""SEI: serve predictions on data the service never sees (homomorphic encryption, pluggy plugins)."""

from __future__ import annotations

from .base import (
    AdapterClient,
    DeployTarget,
    Endpoint,
    KeyTransport,
    ModelAdapter,
    ModelSource,
    PluginOptions,
    Prediction,
    RequestSize,
)
from .build import Build
from .client import Client, ModelSession
from .deployment import Deployment
from .errors import (
    BatchError,
    BuildError,
    ConfigError,
    DeployError,
    DuplicatePluginError,
    InvalidRequest,
    KeyTransportError,
    KeyringError,
    PluginError,
    PluginLoadError,
    QuotaExceeded,
    SeiError,
    ServiceError,
    StateUnavailable,
    UnknownKey,
    UnknownPluginError,
)
from .hookspecs import hookimpl
from .isolation import call_isolated, run_script_isolated
from .keys import Keyring, check_key_id, key_id_for, sei_home
from .logs import log_to_stderr
from .packaging import Shipment, ship_local_distributions
from .paths import ConfigPath
from .plugins import get_plugin_manager
from .registry import AdapterRegistry, ModelSourceRegistry, TargetRegistry, TransportRegistry

__all__ = [
    "AdapterClient",
    "AdapterRegistry",
    "BatchError",
    "Build",
    "BuildError",
    "Client",
    "ConfigError",
    "ConfigPath",
    "DeployError",
    "DeployTarget",
    "Deployment",
    "DuplicatePluginError",
    "Endpoint",
    "InvalidRequest",
    "KeyTransport",
    "KeyTransportError",
    "Keyring",
    "KeyringError",
    "ModelAdapter",
    "ModelSession",
    "ModelSource",
    "ModelSourceRegistry",
    "PluginError",
    "PluginLoadError",
    "PluginOptions",
    "Prediction",
    "QuotaExceeded",
    "RequestSize",
    "SeiError",
    "ServiceError",
    "Shipment",
    "StateUnavailable",
    "TargetRegistry",
    "TransportRegistry",
    "UnknownKey",
    "UnknownPluginError",
    "call_isolated",
    "run_script_isolated",
    "check_key_id",
    "get_plugin_manager",
    "hookimpl",
    "key_id_for",
    "log_to_stderr",
    "sei_home",
    "ship_local_distributions",
]
