"""Built-in plugin: deploy target `local`, the build served by azmlinfsrv on this machine.

Modules: `options` (the target's options), `target` (deploy, delete, serve, status), `address` (ports and the bound host), `gunicorn_conf` (the gunicorn.conf.py written into the
deployment's folder), `worker` (what each gunicorn worker sets up: the WSGI middleware of `guard` and
`auth` around azmlinfsrv's app, `answers` in SEI's error shape; `cors` on SEI's own answers; `static`, the page's files), `logs` (the
private, rotated log).
"""

from __future__ import annotations

from sei_framework import TargetRegistry, hookimpl

from .target import LocalOptions, LocalTarget

__all__ = ["LocalOptions", "LocalTarget", "sei_register_deploy_targets"]


@hookimpl
def sei_register_deploy_targets(registry: TargetRegistry) -> None:
    registry.register(LocalTarget)
