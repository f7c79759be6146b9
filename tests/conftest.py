"""Test session setup: report which aiows build is under test, and check it is the expected one."""

from __future__ import annotations

import os

import aiows


def pytest_report_header() -> str:
    return f"aiows {aiows.__version__} from {os.path.dirname(aiows.__file__)}, compiled={aiows.COMPILED}"
