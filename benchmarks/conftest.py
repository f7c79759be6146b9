"""Benchmark session header: which aiows build is measured."""

from __future__ import annotations

import os

import aiows


def pytest_report_header() -> str:
    return f"aiows {aiows.__version__} from {os.path.dirname(aiows.__file__)}, compiled={aiows.COMPILED}"
