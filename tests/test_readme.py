"""Every Python snippet in the README runs as written (``run()`` starts and stops at once)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)

# run() would block: serve on an ephemeral loopback port for a moment instead.
PRELUDE = """
import asyncio
import aiows.server

def _run(self, host="localhost", port=8000):
    async def start_and_stop():
        async with self.serve("127.0.0.1", 0):
            pass
    asyncio.run(start_and_stop())

aiows.server.WebSocketServer.run = _run
"""


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 10


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(snippet: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(PRELUDE + snippet)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
