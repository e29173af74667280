"""Under `make test` (SEI_NO_SKIPS=1) a skip is a failure: everything the suite needs was installed.

Outside `make test` (a developer's partial environment) tests may skip, each with its reason;
`make test` sets the variable, so a missing Redis, Azurite or Azure SDK can never turn into a
quietly green run. The data the tests use ships in data/, so it never causes a skip.
"""

from __future__ import annotations

import os

import pytest

ENV = "SEI_NO_SKIPS"


def _strict() -> bool:
    return os.environ.get(ENV) == "1"


def _reason(longrepr) -> str:
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail(report) -> None:
    report.outcome = "failed"
    report.longrepr = f"skipped although {ENV}=1 (make test installs everything the suite needs): {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _strict() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _strict() and report.skipped:
        _fail(report)
