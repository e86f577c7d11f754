"""Fixtures: real `spl serve` processes in temporary homes.

One steward per test module (modules use distinct threads, so sharing within
a module is safe); tests that need a pristine or disposable server start
their own with `fresh_steward`.
"""

from __future__ import annotations

import pytest

from harness import LIVE_STEWARDS, Steward, steward_class


@pytest.fixture(scope="module")
def steward():
    s = steward_class().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def reader_token(steward):
    return steward.mint("reader", "records:read")


@pytest.fixture(scope="module")
def writer_token(steward):
    return steward.mint("writer", "records:write")


@pytest.fixture
def fresh_steward():
    """Start disposable stewards inside a test: `fresh_steward(bootstrap=False)`."""
    started: list[Steward] = []

    def make(**kw):
        s = Steward.start(**kw)
        started.append(s)
        return s

    try:
        yield make
    finally:
        for s in started:
            s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, s in enumerate(LIVE_STEWARDS):
            rep.sections.append((f"spl serve log #{i} ({s.url or 'not started'})", s.log_tail(40)))


def pytest_sessionfinish(session, exitstatus):
    # Belt and braces: never leave a steward running after the session.
    for s in list(LIVE_STEWARDS):
        s.stop()
