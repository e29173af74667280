"""SEI: serve predictions on data the service never sees (homomorphic encryption, pluggy plugins)."""

from __future__ import annotations

from .base import (
    AdapterClient,
    DeployTarget,
    DeploymentStatus,
    Endpoint,
    KeyTransport,
    ModelAdapter,
    ModelSource,
    PluginOptions,
    Prediction,
    RequestSize,
)
from .build import Build
from .calibration import read_calibration
from .client import Client, ModelSession
from .cors import CORS_ENV, check_cors_origins, cors_environment
from .deployment import Deployment
from .encoding import base64_size, decode_base64
from .errors import (
    BatchError,
    BuildError,
    ConfigError,
    DeployError,
    DescriptionChanged,
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
from .extras import install_hint, require_extra
from .hookspecs import hookimpl
from .framing import FrameError, decode_frame, encode_frame
from .isolation import IsolatedProcess, ProcessLost, call_isolated, run_script_isolated, serve_isolated
from .keys import Keyring, check_key_id, key_id_for, sei_home
from .logs import log_to_stderr
from .model_files import DATA_TYPES, ModelFileError, load_pickle, load_skops
from .net import is_loopback_host, redact_uri
from .packaging import Shipment, ship_local_distributions
from .paths import ConfigPath
from .plugins import get_plugin_manager
from .rows import Rows, read_rows
from .columns import feature_names
from .validation import validation_problems
from .registry import AdapterRegistry, ModelSourceRegistry, TargetRegistry, TransportRegistry

__all__ = [
    "CORS_ENV",
    "check_cors_origins",
    "cors_environment",
    "Rows",
    "feature_names",
    "read_calibration",
    "read_rows",
    "DATA_TYPES",
    "ModelFileError",
    "load_pickle",
    "load_skops",
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
    "DeploymentStatus",
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
    "DescriptionChanged",
    "UnknownPluginError",
    "call_isolated",
    "run_script_isolated",
    "serve_isolated",
    "IsolatedProcess",
    "ProcessLost",
    "FrameError",
    "encode_frame",
    "decode_frame",
    "check_key_id",
    "base64_size",
    "decode_base64",
    "get_plugin_manager",
    "install_hint",
    "hookimpl",
    "is_loopback_host",
    "key_id_for",
    "log_to_stderr",
    "redact_uri",
    "require_extra",
    "sei_home",
    "ship_local_distributions",
    "validation_problems",
]
