"""Options of the `local` target: where it listens, auth, the page it serves, the origins allowed (CORS)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sei_framework import ConfigPath, PluginOptions, check_cors_origins

from .address import HOST

__all__ = ["LocalOptions"]


class LocalOptions(PluginOptions):
    host: str = HOST
    """The IP address the service listens on. Beyond loopback (0.0.0.0, ::, a LAN address) only with
    `auth: true`: anyone who reaches the port could use the service otherwise."""
    port: int = Field(default=0, ge=0, le=65535)
    """Port on `host`; 0 picks a free one on the first deploy and keeps it on redeploys while it is free."""
    workers: int = 1
    startup_timeout: float = 120.0
    state_dir: ConfigPath | None = None
    """Where pid files and logs go (default: $SEI_HOME/local); relative to the config file."""
    auth: bool = False
    """Require `Authorization: Bearer <token>` on every request but the `/` health probe."""
    token_env: str = Field(default="SEI_LOCAL_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the token (read by `sei deploy` and by the server)."""
    python: ConfigPath | None = None
    """The interpreter whose azmlinfsrv serves (default: this one), a path relative to the config file;
    e.g. a venv made from a dry run's requirements, to try the environment a cloud target would build."""
    page: ConfigPath | None = None
    """A folder of static files (the browser page, `make page`) served at `/page/` on the service's own origin,
    without auth (it holds no secret); relative to the config file. See docs/browser.md."""
    cors_origins: list[str] = []
    """Web page origins (`https://app.example.com`, `http://127.0.0.1:8000`) whose scripts may call the service
    from a browser (CORS, azmlinfsrv's AML_CORS_ORIGINS); exact origins, `*` (any) only without auth."""

    @field_validator("host")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address; give 127.0.0.1 (this machine only), 0.0.0.0 (every interface) "
                "or one of this machine's addresses"
            ) from None

    @model_validator(mode="after")
    def _auth_beyond_loopback(self) -> LocalOptions:
        if not ipaddress.ip_address(self.host).is_loopback and not self.auth:
            raise ValueError(
                f"host {self.host} is reachable from other machines: set auth: true (clients then send the token "
                f"in {self.token_env}), or keep host 127.0.0.1"
            )
        return self

    @field_validator("cors_origins")
    @classmethod
    def _cors(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return check_cors_origins(value, auth=bool(info.data.get("auth", True)))  # auth invalid: no wildcard
