"""Test session setup: report which aiows build is under test, and check it is the expected one."""

from __future__ import annotations

import os

import pytest

import aiows
from aiows.testing import TestClient


def pytest_report_header() -> str:
    return f"aiows {aiows.__version__} from {os.path.dirname(aiows.__file__)}, compiled={aiows.COMPILED}"


#: Transports the integration tests run on; picows is skipped when it is not installed.
TRANSPORTS = ["websockets", "picows"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve every ``TestClient`` of the test with this transport (tests that set one keep theirs)."""
    name: str = request.param
    if name != "websockets":
        pytest.importorskip(name)
    enter = TestClient.__aenter__

    async def enter_with_transport(self: TestClient) -> TestClient:
        if self.app.options.transport == "websockets":
            self.app.options = self.app.options.replace(transport=name)
        return await enter(self)

    monkeypatch.setattr(TestClient, "__aenter__", enter_with_transport)
    return name
