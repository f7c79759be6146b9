"""Pinned npm packages for the tests that run real JavaScript tools (the AsyncAPI parser, tsc, a MessagePack library).

Installed once per set of pins into a cache directory (``$AIOWS_NPM_CACHE``, default ``~/.cache/aiows-npm``)
from the npm registry; a test that needs them is skipped, saying why, only where ``node`` or ``npm`` is
missing (``apt-get install nodejs npm``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_packages(packages: dict[str, str]) -> Path:
    """The directory whose ``node_modules`` holds ``packages`` (name -> exact version), installed if need be."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Node and npm (apt-get install nodejs npm)")
    pins = "-".join(f"{name.replace('/', '+')}@{version}" for name, version in sorted(packages.items()))
    root = Path(os.environ.get("AIOWS_NPM_CACHE") or Path.home() / ".cache" / "aiows-npm") / pins
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing the same
        if not (root / "installed").exists():
            (root / "package.json").write_text(json.dumps({"private": True, "dependencies": packages}))
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                cwd=root, check=True, timeout=600,
            )  # fmt: skip
            (root / "installed").touch()
    return root
