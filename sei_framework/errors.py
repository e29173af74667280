"""One error hierarchy; the CLI and the scoring service map it to messages in one place each."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "SeiError",
    "ConfigError",
    "PluginLoadError",
    "PluginError",
    "UnknownPluginError",
    "DuplicatePluginError",
    "InvalidRequest",
    "UnknownKey",
    "DescriptionChanged",
    "QuotaExceeded",
    "KeyTransportError",
    "KeyringError",
    "BuildError",
    "DeployError",
    "ServiceError",
    "StateUnavailable",
    "BatchError",
]


class SeiError(Exception):
    """Base of every error SEI raises on purpose; `code` is a stable machine-readable name."""

    code = "sei_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(SeiError):
    """A config file or an option that does not validate; the message carries the field paths."""

    code = "invalid_config"

    def __init__(self, message: str, *, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems)
        text = message if not self.problems else message + "\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(text)


class PluginLoadError(SeiError):
    """A plugin could not be imported or registered."""

    code = "plugin_load_error"


class PluginError(SeiError):
    """A plugin failed while doing its work, or refused its input (a non-linear model, say)."""

    code = "plugin_error"


class UnknownPluginError(SeiError):
    """A name that no registered plugin provides; the message lists the available names."""

    code = "unknown_plugin"

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        names = ", ".join(sorted(available)) or "none"
        super().__init__(f"unknown {kind} {name!r}; available: {names}")


class DuplicatePluginError(PluginLoadError):
    """Two plugins registered the same adapter, transport or target name."""

    code = "duplicate_plugin"


class InvalidRequest(SeiError):
    """A scoring request that is malformed or does not fit the model."""

    code = "invalid_request"
    status = 400


class UnknownKey(InvalidRequest):
    """The service holds no public keys under this key id; the client should publish them."""

    code = "unknown_key_id"
    status = 404


class DescriptionChanged(InvalidRequest):
    """The request was made for another description of the model (rebuilt since the client's describe):
    describe again, encrypt again, resend."""

    code = "description_changed"
    status = 409


class QuotaExceeded(InvalidRequest):
    """A key id made more predict requests than the quota allows in the current window."""

    code = "quota_exceeded"
    status = 429


class StateUnavailable(SeiError):
    """The shared state store cannot be reached; quota-bound requests are refused (fail closed)."""

    code = "state_unavailable"
    status = 503


class KeyTransportError(SeiError):
    """Public keys could not be published or fetched."""

    code = "key_transport_error"
    status = 502


class KeyringError(SeiError):
    """The client's stored keys cannot be read or used."""

    code = "unusable_keys"


class BuildError(SeiError):
    """A build folder could not be made or read."""

    code = "build_error"


class DeployError(SeiError):
    """A deploy target could not deploy, find or delete a service."""

    code = "deploy_error"


class ServiceError(SeiError):
    """The service answered with an error; carries its code and HTTP status."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code)
        self.status = status


class BatchError(SeiError):
    """A batch job cannot go on: a missing or damaged file, a shard for another model or key, shards
    that failed to score (each named)."""

    code = "batch_error"
