"""Build: compile the hot-path modules with mypyc unless ``AIOWS_USE_MYPYC=0``.

Package metadata lives in ``pyproject.toml``; this file only adds the
extension modules.
"""

from __future__ import annotations

import os

from setuptools import setup

#: Modules compiled by mypyc: everything a message touches between recv() and the handler.
COMPILED_MODULES = [
    "aiows/websocket.py",
    "aiows/codecs.py",
    "aiows/router.py",
    "aiows/chain.py",
    "aiows/dispatch.py",
    "aiows/metering.py",
    "aiows/middleware/base.py",
    "aiows/middleware/auth.py",
    "aiows/middleware/logging.py",
    "aiows/middleware/rate_limit.py",
    "aiows/transports/base.py",
    "aiows/transports/core.py",
    "aiows/transports/websockets.py",
    "aiows/transports/asgi.py",
]

ext_modules = []
# The PEP 517 backend (_build/backend.py) sets AIOWS_USE_MYPYC=0 for the sdist: it ships sources only.
if os.environ.get("AIOWS_USE_MYPYC", "1") != "0":
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "aiows: compiling needs mypy (a build requirement when building with pip or python -m build); "
            "install it, or set AIOWS_USE_MYPYC=0 for the pure-Python build"
        ) from None

    ext_modules = mypycify(["--config-file=mypy.ini", *COMPILED_MODULES], opt_level="3")
    # Without a working C compiler the build goes on with the pure-Python modules (aiows.COMPILED is
    # then False) instead of failing: `pip install .` must work on a machine with only Python and pip.
    for extension in ext_modules:
        extension.optional = True

setup(ext_modules=ext_modules)
