"""``aiows.testing`` and the ``aiows_client`` pytest plugin, under pytest-asyncio and anyio."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient
from doc_blocks import DOCS, blocks

pytest_plugins = ["pytester"]

APP = """
from aiows import BaseMessage, Router, WebSocket, WebSocketServer

router = Router()

@router.message("ping")
async def ping(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_json({"type": "pong"})

server = WebSocketServer()
server.include_router(router)
"""

#: A user's test: two lines inside the function.
USER_TEST = """
{decorators}
async def test_ping(aiows_client):
    async with aiows_client.connect("/") as ws:
        await ws.send_json({{"type": "ping"}}); assert await ws.receive_json() == {{"type": "pong"}}
"""


def make_server() -> tuple[WebSocketServer, list[int]]:
    """An echo server; the list records the thread id of each handler call."""
    threads: list[int] = []
    router = Router()

    @router.message("ping")
    async def ping(websocket: WebSocket, message: BaseMessage) -> None:
        threads.append(threading.get_ident())
        await websocket.send_json({"type": "pong", "path": websocket.path})

    server = WebSocketServer()
    server.include_router(router)
    return server, threads


async def test_async_with_serves_in_the_tests_event_loop() -> None:
    server, threads = make_server()
    async with TestClient(server) as client:
        async with client.connect("/a") as ws:
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json() == {"type": "pong", "path": "/a"}
    assert threads == [threading.get_ident()]


async def test_with_serves_from_a_background_thread() -> None:
    server, threads = make_server()
    with TestClient(server) as client:
        async with client.connect("/b") as ws:
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json() == {"type": "pong", "path": "/b"}
        port = client.port
    assert len(threads) == 1 and threads[0] != threading.get_ident()
    with pytest.raises(OSError):  # stopped: nothing listens any more
        await asyncio.open_connection("127.0.0.1", port)


def test_with_works_from_synchronous_code() -> None:
    server, _ = make_server()

    async def talk(client: TestClient) -> object:
        async with client.connect("/") as ws:
            await ws.send_json({"type": "ping"})
            return await ws.receive_json()

    with TestClient(server) as client:
        assert asyncio.run(talk(client)) == {"type": "pong", "path": "/"}
        assert asyncio.run(talk(client)) == {"type": "pong", "path": "/"}  # a second event loop, same server


def test_with_reports_a_server_that_cannot_start() -> None:
    router = Router()
    server = WebSocketServer()
    server.include_router(router)
    server.dispatcher = lambda: (_ for _ in ()).throw(RuntimeError("broken app"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="broken app"):
        with TestClient(server):
            pass  # pragma: no cover


@pytest.fixture
def aiows_server() -> WebSocketServer:
    return make_server()[0]


async def test_the_fixture_in_this_suite(aiows_client: TestClient) -> None:
    async with aiows_client.connect("/fixture") as ws:
        await ws.send_json({"type": "ping"}); assert (await ws.receive_json())["path"] == "/fixture"  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # websockets runs on asyncio


@pytest.mark.anyio
async def test_async_with_under_anyio() -> None:
    server, _ = make_server()
    async with TestClient(server) as client:
        async with client.connect("/anyio") as ws:
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json() == {"type": "pong", "path": "/anyio"}


# A user's project, run by pytest in a subprocess: proves the entry point loads the plugin.


def test_user_suite_with_a_conftest_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP)
    pytester.makeconftest("import pytest\nfrom app import server\n\n@pytest.fixture\ndef aiows_server():\n    return server\n")
    pytester.makepyfile(test_app=USER_TEST.format(decorators=""))
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1)


def test_user_suite_with_the_ini_option_in_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP)
    pytester.makeini("[pytest]\naiows_server = app:server\nasyncio_mode = strict\n")
    pytester.makepyfile(test_app="import pytest\n" + USER_TEST.format(decorators="@pytest.mark.asyncio"))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_user_suite_under_anyio_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP)
    test = USER_TEST.format(decorators='@pytest.mark.anyio\n@pytest.mark.aiows_server("app:server")')
    backend = "@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    pytester.makepyfile(test_app="import pytest\n" + backend + test)
    result = pytester.runpytest_subprocess("-p", "no:asyncio")
    result.assert_outcomes(passed=1)


def test_user_suite_without_a_server_is_told_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=USER_TEST.format(decorators=""))
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=auto")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*aiows_client needs your server: define an 'aiows_server' fixture*"])


def test_user_suite_with_a_bad_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naiows_server = missing_app:server\n")
    pytester.makepyfile(test_app=USER_TEST.format(decorators=""))
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=auto")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*aiows_server: could not import module 'missing_app'*"])


def test_testing_guide_fixture_block_passes_under_pytest(pytester: pytest.Pytester) -> None:
    guide = DOCS / "guides" / "testing.md"
    snippets = [block.code for block in blocks(guide) if block.language == "python" and "aiows_client" in block.code]
    assert snippets
    pytester.makepyfile(test_guide_snippet=snippets[0])
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1)
