"""One temporary Prefect server for the flow tests that run flows in-process: starting
it is the cost that matters (tens of seconds on a busy 2-core machine)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):  # a busy 2-core CI machine
        yield
