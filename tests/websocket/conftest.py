from __future__ import annotations

import pytest


@pytest.fixture(params=["h11", "httptools"])
def http(request: pytest.FixtureRequest) -> str:
    """Every WebSocket test runs once per HTTP parser: the upgrade must not depend on it."""
    return str(request.param)
