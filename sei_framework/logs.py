"""A service's log lines to stderr, which the inference server's log captures."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["log_to_stderr", "log_to_server_log"]

FORMAT = "%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s"  # as azmlinfsrv's own lines
SERVER_MODULE = "azureml_inference_server_http.server"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (as logging's last-resort handler does)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def log_to_stderr(name: str) -> None:
    """INFO lines of logger `name` to stderr; idempotent. azmlinfsrv's logging setup disables the loggers
    that existed before it ran, so this enables `name` again."""
    logger = logging.getLogger(name)
    logger.disabled = False
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a root handler (logging.info() installs one) would repeat each line
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)


def log_to_server_log() -> None:
    """Served by azmlinfsrv: SEI's lines (`request refused: ...`) reach its log. Elsewhere (score.py
    imported by a test or another host) the host's logging setup is left alone."""
    if SERVER_MODULE not in sys.modules:
        return
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith("sei_") and isinstance(logger, logging.Logger):
            logger.disabled = False
    log_to_stderr("sei_framework")
