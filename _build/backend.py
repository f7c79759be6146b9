"""PEP 517 backend: setuptools, plus mypy in the build requirements when compiling.

``AIOWS_USE_MYPYC=0`` builds the pure-Python package and needs no mypy.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools.build_meta import *  # noqa: F401,F403  (the rest of the PEP 517 hooks)

#: What mypyc needs to type-check and compile the hot-path modules.
COMPILE_REQUIRES = ["mypy>=1.11", "websockets>=14", "pydantic>=2", "orjson>=3.11.6", "mypy_extensions>=1.0"]


def _compile_requires() -> list[str]:
    return COMPILE_REQUIRES if os.environ.get("AIOWS_USE_MYPYC", "1") != "0" else []


# setuptools' own hooks would run setup.py, which imports mypyc before it is installed;
# the project declares no setup_requires, so the static list is the whole answer.
def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _compile_requires()


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _compile_requires()
