"""PEP 517 backend: setuptools, plus mypy in the build requirements when compiling.

``AIOWS_USE_MYPYC=0`` builds the pure-Python package and needs no mypy. An
sdist never needs it: it holds the sources that build either variant, so its
hooks run ``setup.py`` with the extensions switched off. So do the metadata
hooks (the metadata is the same for both variants): mypyc type-checks and
generates C once per build, in ``build_wheel``, not a second time for pip's
``prepare_metadata_for_build_wheel``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F401,F403  (the rest of the PEP 517 hooks)

#: What mypyc needs to type-check and compile the hot-path modules. websockets>=16.0, above the runtime
#: floor (14.1), for typing only: before 16.0 ServerProtocol.receive_data is annotated ``bytes`` and the
#: transport passes it a bytearray. mypy>=1.20.2: older mypyc miscompiles the request/reply code (1.16:
#: "attribute '__mypyc_temp__' ... undefined" in try/finally around an await; 1.18: a coroutine overridden
#: in a subclass fails its type check). (.ci/lowest-build-versions.txt pins these floors for CI.)
COMPILE_REQUIRES = ["mypy>=1.20.2", "websockets>=16.0", "pydantic>=2.6", "orjson>=3.11.6", "mypy_extensions>=1.0"]


def _compile_requires() -> list[str]:
    return COMPILE_REQUIRES if os.environ.get("AIOWS_USE_MYPYC", "1") != "0" else []


# setuptools' own hooks would run setup.py, which imports mypyc before it is installed;
# the project declares no setup_requires, so the static list is the whole answer.
def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _compile_requires()


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _compile_requires()


@contextmanager
def _without_extensions() -> Iterator[None]:
    """Run ``setup.py`` as for the pure build: no mypyc import, no generated C in the sdist."""
    saved = os.environ.get("AIOWS_USE_MYPYC")
    os.environ["AIOWS_USE_MYPYC"] = "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AIOWS_USE_MYPYC"]
        else:
            os.environ["AIOWS_USE_MYPYC"] = saved


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    return []


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    with _without_extensions():
        return build_meta.build_sdist(sdist_directory, config_settings)


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    with _without_extensions():
        return build_meta.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    with _without_extensions():
        return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)
