"""Every Python snippet in the README runs as written (``run()`` starts and stops at once) and passes
``mypy --strict`` as a user's own code would: each snippet is a module in a fresh directory outside the
repository, type-checked against the installed aiows with no configuration file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiows import WebSocketServer
from aiows.testing import TestClient
from certs import Certs, make_certs

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
IDS = [f"snippet{i}" for i in range(len(SNIPPETS))]

# run() would block: serve on an ephemeral loopback port for a moment instead (with its TLS context, if any).
PRELUDE = """
import asyncio
import aiows.server

def _run(self, host="localhost", port=8000, **options):
    async def start_and_stop():
        async with self.serve("127.0.0.1", 0, ssl=options.get("ssl")):
            pass
    asyncio.run(start_and_stop())

aiows.server.WebSocketServer.run = _run
"""


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("readme-certs"))


@pytest.mark.parametrize("snippet", SNIPPETS, ids=IDS)
def test_readme_snippet_runs(snippet: str, tmp_path: Path, certs: Certs) -> None:
    # The TLS snippet's cert.pem and key.pem, in the directory it runs in.
    shutil.copy(certs.server, tmp_path / "cert.pem")
    shutil.copy(certs.server_key, tmp_path / "key.pem")
    script = tmp_path / "snippet.py"
    script.write_text(PRELUDE + snippet)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run ``mypy --strict`` once over every snippet (one module each); return the error lines by module name."""
    pytest.importorskip("mypy", reason="the README's snippets are type-checked with mypy (pip install '.[test]')")
    directory = tmp_path_factory.mktemp("readme-snippets")
    for name, snippet in zip(IDS, SNIPPETS):
        (directory / f"{name}.py").write_text(snippet)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MYPY")}
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file=", "--cache-dir", str(directory / ".cache")]
    result = subprocess.run(
        [*command, *(f"{name}.py" for name in IDS)], cwd=directory, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode in (0, 1), f"mypy did not run:\n{result.stdout}{result.stderr}"
    errors: dict[str, list[str]] = {name: [] for name in IDS}
    for line in result.stdout.splitlines():
        module = line.partition(".py:")[0]
        if module in errors:
            errors[module].append(line)
    assert result.returncode == 0 or any(errors.values()), result.stdout
    return errors


@pytest.mark.parametrize("name", IDS)
def test_readme_snippet_passes_mypy_strict(name: str, mypy_errors: dict[str, list[str]]) -> None:
    assert mypy_errors[name] == [], "\n".join(mypy_errors[name])


def load_snippet(marker: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the one snippet that contains ``marker`` with ``run()`` made a no-op; return its globals."""
    (snippet,) = [snippet for snippet in SNIPPETS if marker in snippet]
    monkeypatch.setattr(WebSocketServer, "run", lambda self, host="localhost", port=8000, **options: None)
    namespace: dict[str, Any] = {"__name__": "readme_snippet"}
    exec(compile(snippet, "README.md", "exec", dont_inherit=True), namespace)  # no __future__ of ours
    return namespace


async def test_readme_rooms_snippet_serves_the_messages_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    server = load_snippet("class Say(Room):", monkeypatch)["server"]
    async with TestClient(server) as client:
        async with client.connect() as ann, client.connect() as bob:
            for ws, members in ((ann, 1), (bob, 2)):
                await ws.send_json({"type": "join", "room": "lobby"})
                assert await ws.receive_json() == {"type": "joined", "room": "lobby", "members": members}
            assert await ann.receive_json() == {"type": "joined", "room": "lobby", "members": 2}
            await bob.send_json({"type": "say", "room": "lobby", "text": "hi ann"})
            assert await ann.receive_json() == {"type": "said", "room": "lobby", "text": "hi ann"}
            await ann.send_json({"type": "leave", "room": "lobby"})
            assert await ann.receive_json() == {"type": "left", "room": "lobby"}
            await ann.send_json({"type": "join", "room": "lobby"})
            assert await ann.receive_json() == {"type": "joined", "room": "lobby", "members": 2}
            # bob's next frame: his own "said" was excluded
            assert await bob.receive_json() == {"type": "joined", "room": "lobby", "members": 2}
