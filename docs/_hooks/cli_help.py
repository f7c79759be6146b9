"""MkDocs hook: the command line reference is the installed ``aiows`` command's own ``--help`` output.

A line ``<!-- help: aiows run --help -->`` in a page becomes a ``text`` block holding what that command prints
(run as ``python -m aiows ...``, 100 columns wide), so the page cannot drift from the argparse parser.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

MARKER = re.compile(r"^<!-- help: aiows (?P<args>[^>]*--help) -->$", flags=re.MULTILINE)


def help_text(args: str) -> str:
    """What ``aiows ARGS`` prints; a command that fails stops the build."""
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-m", "aiows", *args.split()], capture_output=True, text=True, env=env, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"aiows {args} exited with {result.returncode}: {result.stderr}")
    return result.stdout.rstrip()


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each help marker with the command's output; a marker this hook cannot read stops the build."""
    markdown = MARKER.sub(lambda match: f"```text\n{help_text(match['args'])}\n```", markdown)
    if "<!-- help:" in markdown:
        raise ValueError("a help marker is not '<!-- help: aiows [COMMAND] --help -->' on a line of its own")
    return markdown
