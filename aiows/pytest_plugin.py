"""The aiows pytest plugin (installed with aiows): the ``aiows_client`` fixture.

Tell it which server to test, then a test is two lines:

```python
# conftest.py                         # or, in pyproject.toml:
import pytest                         # [tool.pytest.ini_options]
from myapp import server              # aiows_server = "myapp:server"
                                      # (in pytest.ini the quotes are optional)
@pytest.fixture
def aiows_server():
    return server

# test_myapp.py
@pytest.mark.asyncio                  # pytest-asyncio's strict mode (its default) needs the marker
async def test_echo(aiows_client):
    async with aiows_client.connect("/") as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}
```

``@pytest.mark.aiows_server(server)`` (an object or ``"module:attribute"``)
picks the server for one test or module. The server runs in a background
thread with its own event loop, so the fixture works the same under
pytest-asyncio (strict mode with the marker, or auto mode) and anyio.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cli import AppLoadError, import_server
from .server import WebSocketServer
from .testing import TestClient

__all__ = ["aiows_client", "aiows_server"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``aiows_server`` ini option."""
    parser.addini("aiows_server", "'module:attribute' of the WebSocketServer the aiows_client fixture serves", default="")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``aiows_server`` marker."""
    config.addinivalue_line(
        "markers", "aiows_server(server): the WebSocketServer (or 'module:attribute') aiows_client serves"
    )


def _load(spec: object, rootdir: str) -> WebSocketServer:
    if isinstance(spec, WebSocketServer):
        return spec
    if isinstance(spec, str):
        try:
            return import_server(spec, rootdir)
        except AppLoadError as exc:
            pytest.fail(f"aiows_server: {exc}", pytrace=False)
    pytest.fail(f"aiows_server must be a WebSocketServer or 'module:attribute', not {spec!r}", pytrace=False)


@pytest.fixture
def aiows_server(request: pytest.FixtureRequest) -> WebSocketServer:
    """The server ``aiows_client`` serves: override this fixture, or set the ``aiows_server`` ini option."""
    spec = request.config.getini("aiows_server")
    if not spec:
        pytest.fail(
            "aiows_client needs your server: define an 'aiows_server' fixture that returns it, "
            "set 'aiows_server = \"module:attribute\"' in the pytest configuration, "
            "or mark the test with @pytest.mark.aiows_server(server)",
            pytrace=False,
        )
    return _load(_unquote(spec), str(request.config.rootpath))


def _unquote(value: str) -> str:
    """``"myapp:server"`` as written in ``pytest.ini`` (which keeps the quotes) is ``myapp:server``."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].strip()
    return value


@pytest.fixture
def aiows_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A ``TestClient`` serving the app on 127.0.0.1 for the test: ``async with aiows_client.connect("/") as ws:``."""
    marker = request.node.get_closest_marker("aiows_server")
    if marker is not None and marker.args:
        server = _load(marker.args[0], str(request.config.rootpath))
    else:
        server = request.getfixturevalue("aiows_server")
    with TestClient(server) as client:
        yield client
