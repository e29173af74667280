"""The gunicorn.conf.py that SEI writes into a deployment's folder (azmlinfsrv runs gunicorn there).

azmlinfsrv's command line sets bind, workers, timeout and the access log file, which outrank a config
file, so the bind is set again in `on_starting`; the other settings are plain assignments. The file
imports nothing of SEI: it runs in gunicorn's master, and what the master imports (requests, numpy)
would be imported before gevent patches the workers. Each worker imports `sei_deploy_local.worker`.
"""

from __future__ import annotations

__all__ = ["ACCESS_LOG_FORMAT", "HEADER_TIMEOUT_S", "render"]

# No query string (%(r)s, %(q)s), referer (%(f)s) or Basic-auth user name (%(u)s): any may carry a secret.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
HEADER_TIMEOUT_S = 5
"""Request headers must arrive within this many seconds, or the server hangs up (gunicorn's `keepalive`,
which the gevent worker applies to reading each request's headers and to idle kept-alive connections)."""
SYNC_WARNING = (
    "gevent is not installed in this environment: serving with gunicorn's sync worker, "
    "which one idle client can stall; install the `serve` extra of sei-framework (docs/install.md)"
)


def render(name: str, bind: str, build: str, token_env: str | None, page: str | None = None) -> str:
    """The text of gunicorn.conf.py for deployment `name`; `token_env` names the token's variable (auth on),
    `page` the folder served at /page/."""
    return f'''"""Written by SEI for the local deployment {name!r}: gunicorn settings for azmlinfsrv.

Imports nothing of SEI here (gunicorn's master); each worker wraps azmlinfsrv's app in SEI's middleware.
"""

import importlib.util

worker_class = "gevent" if importlib.util.find_spec("gevent") else "sync"
keepalive = {HEADER_TIMEOUT_S!r}
access_log_format = {ACCESS_LOG_FORMAT!r}
control_socket_disable = True  # SEI stops the server by its process group; no socket shared in $HOME


def on_starting(server):
    server.cfg.set("bind", [{bind!r}])  # azmlinfsrv asks for 0.0.0.0
    if worker_class == "sync":
        server.log.warning({SYNC_WARNING!r})


def post_worker_init(worker):
    from sei_deploy_local.worker import setup

    setup(worker, build={build!r}, token_env={token_env!r}, page={page!r})
'''
