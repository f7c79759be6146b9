"""The ``aiows`` command: ``aiows run module:server``, the contract commands, ``aiows --version``.

``aiows asyncapi myapp:server [-o FILE] [--yaml]`` writes the app's AsyncAPI
document (JSON; YAML with ``--yaml`` and the ``yaml`` extra) and ``aiows
typescript myapp:server [-o FILE]`` its TypeScript message types
(``aiows.contract``), to standard output without ``-o``.

``aiows run myapp:server`` imports ``myapp`` from the current directory (as
uvicorn does) and serves the ``WebSocketServer`` named ``server`` in it.
``--workers N`` starts N processes that share the port through ``SO_REUSEPORT``
(Linux); this process supervises them: it restarts a worker that dies (at most
``MAX_RESTARTS`` times in ``RESTART_WINDOW`` seconds) and, on Ctrl-C or
SIGTERM, asks each worker to shut down gracefully.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import importlib.metadata
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import ssl
from collections.abc import Sequence
from types import FrameType
from typing import Any

from . import COMPILED, __version__
from .broadcast.memory import MemoryBackend
from .logs import announce, configure_logging
from .options import ServerOptions
from .server import WebSocketServer
from .tls import TLSError, server_context

__all__ = ["AppLoadError", "import_server", "main", "version_text"]

#: A worker that dies is restarted, unless workers died this many times in ``RESTART_WINDOW`` seconds.
MAX_RESTARTS = 5
#: Seconds over which ``MAX_RESTARTS`` is counted.
RESTART_WINDOW = 60.0
#: Seconds each worker has to shut down gracefully before it is killed.
SHUTDOWN_TIMEOUT = 30.0

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")

#: What ``aiows run`` uses for a flag that is neither given nor set in the environment.
RUN_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8000,
    "workers": 1,
    "log_level": "info",
    "log_format": "text",
    "certfile": None,
    "keyfile": None,
    "ca_certs": None,
}

#: The variables ``AiowsSettings`` reads (to tell a user without pydantic-settings that they are not read).
SETTINGS_VARIABLES = frozenset(
    f"AIOWS_{name.upper()}"
    for name in (*RUN_DEFAULTS, "redis_url", *(field.name for field in dataclasses.fields(ServerOptions)))
)


class AppLoadError(Exception):
    """``module:attribute`` does not name an importable ``WebSocketServer``."""


def import_server(spec: str, app_dir: str = ".") -> WebSocketServer:
    """Import ``module:attribute`` (``attribute`` may be dotted) with ``app_dir`` first on ``sys.path``.

    Raises:
        AppLoadError: the spec is malformed, the module is missing, or the
            attribute is missing or not a ``WebSocketServer``. Errors raised
            while the module itself runs propagate unchanged.
    """
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs:
        raise AppLoadError(f"{spec!r} is not 'module:attribute' (for example 'myapp:server')")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f"could not import module {module_name!r} (looked in {path} and on sys.path)") from None
        raise
    target: Any = module
    for attr in attrs.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attrs!r}") from None
    if not isinstance(target, WebSocketServer):
        raise AppLoadError(f"{spec} is a {type(target).__name__}, not a WebSocketServer")
    return target


def version_text() -> str:
    """What ``aiows --version`` prints: aiows and its dependencies, Python, compiled or not."""
    lines = [f"aiows {__version__} (compiled: {'yes' if COMPILED else 'no'})"]
    for dist in ("websockets", "pydantic", "orjson"):
        try:
            lines.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{dist} (not installed)")
    lines.append(f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.platform})")
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiows",
        description="aiows: a typed, compiled WebSocket framework.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version on several lines
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="serve a WebSocketServer", description="Serve MODULE:SERVER until Ctrl-C or SIGTERM.")
    run.add_argument("app", metavar="MODULE:SERVER", help="where the WebSocketServer is, e.g. myapp:server")
    # Defaults are None: a flag not given comes from AIOWS_* (AiowsSettings), else from RUN_DEFAULTS.
    run.add_argument("--host", help="interface to listen on (default: 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default: 8000; 0 picks a free one)")
    run.add_argument("--workers", type=_positive, help="processes sharing the port (Linux; default: 1)")
    run.add_argument("--log-level", choices=LOG_LEVELS, help="logging level (default: info)")
    run.add_argument(
        "--log-format", choices=LOG_FORMATS, help="text, or json: one JSON object per line (default: text)"
    )
    run.add_argument("--app-dir", default=".", help="directory to import MODULE from (default: current directory)")
    run.add_argument("--reload", action="store_true", help="restart when a .py file changes (needs aiows[reload])")
    tls = run.add_argument_group("TLS (wss:// and HTTPS on the same port)")
    tls.add_argument("--certfile", help="the server's certificate chain (PEM); turns TLS on")
    tls.add_argument("--keyfile", help="its private key (PEM; default: in the certificate file)")
    tls.add_argument("--ca-certs", help="require client certificates signed by these CAs (PEM; mutual TLS)")
    for name, what in (("asyncapi", "AsyncAPI 3.0.0 document (JSON)"), ("typescript", "TypeScript message types")):
        contract = commands.add_parser(name, help=f"write the app's {what}", description=f"Write MODULE:SERVER's {what}.")
        contract.add_argument("app", metavar="MODULE:SERVER", help="where the WebSocketServer is, e.g. myapp:server")
        contract.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
        contract.add_argument("--app-dir", default=".", help="directory to import MODULE from (default: current directory)")
        if name == "asyncapi":
            contract.add_argument("--yaml", action="store_true", help='write YAML instead of JSON (needs aiows[yaml])')
    return parser


@dataclasses.dataclass(frozen=True)
class Launch:
    """What each serving process needs (picklable: worker processes are spawned with it)."""

    app: str
    app_dir: str
    host: str
    port: int
    log_level: str
    log_format: str = "text"
    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    #: Where the workers share their metrics (``aiows.metrics``), with ``--workers N`` and ``metrics_path``.
    metrics_dir: str | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context from the certificate files, or ``None`` without ``certfile`` (``TLSError``: unusable files)."""
        if self.certfile is None:
            return None
        return server_context(self.certfile, self.keyfile, ca_certs=self.ca_certs)

    def serve(self, **run_options: Any) -> None:
        """Import the app and serve it in this process until SIGTERM or Ctrl-C."""
        server = import_server(self.app, self.app_dir)
        if self.metrics_dir is not None and server.metrics is not None:
            server.metrics.share(self.metrics_dir)
        server.run(self.host, self.port, ssl=self.ssl_context(), **run_options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aiows`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("asyncapi", "typescript"):
        return _contract(args)
    return _run(args)


def _error(message: str, status: int = 1) -> int:
    print(f"aiows: error: {message}", file=sys.stderr, flush=True)
    return status


def _say(message: str) -> None:
    announce(message)


class _SettingsProblem(Exception):
    pass


def _environment() -> Any:
    """``AiowsSettings()`` (the environment and ``.env``), or ``None`` without pydantic-settings."""
    try:
        from .settings import AiowsSettings, SettingsError
    except ImportError:
        used = sorted(name for name in os.environ if name in SETTINGS_VARIABLES)
        if not used and os.path.exists(".env"):
            with open(".env", encoding="utf-8", errors="replace") as dotenv:
                used = [line.split("=", 1)[0].strip() for line in dotenv if line.split("=", 1)[0].strip() in SETTINGS_VARIABLES]
        if used:
            raise _SettingsProblem(
                f"{used[0]} is set, but reading aiows settings from the environment needs pydantic-settings: "
                'pip install "aiows[settings]"'
            ) from None
        return None
    try:
        return AiowsSettings()
    except SettingsError as exc:
        raise _SettingsProblem(str(exc)) from None


def _resolve(args: argparse.Namespace) -> None:
    """Fill in the flags not given: from the environment (``AIOWS_*``, ``.env``), else the defaults."""
    settings = _environment()
    for name, default in RUN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default if settings is None else getattr(settings, name))


def _contract(args: argparse.Namespace) -> int:
    from .contract.asyncapi import asyncapi_document
    from .contract.typescript import typescript_declarations

    as_yaml = args.command == "asyncapi" and args.yaml
    if as_yaml:
        try:
            import yaml
        except ImportError:  # a usage error, found before the app is imported
            return _error('--yaml needs PyYAML: pip install "aiows[yaml]"', 2)
    try:
        server = import_server(args.app, args.app_dir)
    except AppLoadError as exc:
        return _error(str(exc))
    try:
        document = asyncapi_document(server)
    except Exception as exc:  # a model pydantic cannot write a JSON Schema for, for one
        return _error(f"cannot build the AsyncAPI document of {args.app}: {exc}")
    if args.command == "asyncapi":
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if as_yaml:  # from the JSON text: plain data, no object written twice as a YAML alias
            text = yaml.safe_dump(json.loads(text), sort_keys=False, allow_unicode=True)
    else:
        text = typescript_declarations(document)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as output:
            output.write(text)
    except OSError as exc:
        return _error(f"cannot write {args.output}: {exc.strerror or exc}")
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        _resolve(args)
    except _SettingsProblem as exc:
        return _error(str(exc))
    if args.log_format == "json":  # this process's own lines too (the workers configure their own logging)
        configure_logging(args.log_level, "json")
    if args.workers > 1 and not (sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")):
        return _error("--workers > 1 needs SO_REUSEPORT load balancing, which aiows supports on Linux only")
    if args.reload and args.workers > 1:
        return _error("--reload runs one worker: drop --workers")
    if args.certfile is None and (args.keyfile is not None or args.ca_certs is not None):
        return _error("--keyfile and --ca-certs need --certfile (the server's certificate)")
    launch = Launch(
        args.app, args.app_dir, args.host, args.port, args.log_level, args.log_format,
        args.certfile, args.keyfile, args.ca_certs,
    )  # fmt: skip
    try:
        launch.ssl_context()  # unusable certificate files fail here, before any worker starts
    except TLSError as exc:
        return _error(str(exc))
    try:
        server = import_server(args.app, args.app_dir)
    except AppLoadError as exc:
        return _error(str(exc))
    try:
        reserved = _reserve(args.host, args.port, shared=args.workers > 1)
    except OSError as exc:
        return _error(f"cannot listen on {args.host}:{args.port}: {exc}")
    port = reserved[0].getsockname()[1]
    launch = dataclasses.replace(launch, port=port)
    compiled = "yes" if COMPILED else "no"
    scheme = "wss" if launch.tls else "ws"
    for sock in reserved:
        host = sock.getsockname()[0]
        url = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        _say(f"listening on {url} (workers: {args.workers}, compiled: {compiled}, transport: {server.options.transport})")
    if args.workers > 1 and isinstance(server.hub.backend, MemoryBackend):
        _say("note: with the in-memory broadcast backend, rooms do not span workers; use the Redis backend")
    if args.workers > 1 and server.metrics is not None:
        launch = dataclasses.replace(launch, metrics_dir=tempfile.mkdtemp(prefix=f"aiows-metrics-{os.getpid()}-"))
        _say(f"metrics: a scrape of any worker reports the sum over all of them ({server.options.metrics_path})")
    if args.workers == 1:
        for sock in reserved:  # a single process needs no SO_REUSEPORT: free the port for it
            sock.close()
        if args.reload:
            return _run_reload(launch)
        _configure_logging(launch)
        server.run(launch.host, port, ssl=launch.ssl_context())
        return 0
    try:
        return _Supervisor(launch, args.workers).run()
    finally:
        for sock in reserved:
            sock.close()
        if launch.metrics_dir is not None:
            shutil.rmtree(launch.metrics_dir, ignore_errors=True)


def _reserve(host: str, port: int, *, shared: bool) -> list[socket.socket]:
    """Bind (without listening) one socket per address of ``host``: resolves port 0 and, with
    ``shared``, holds the port for the workers' ``SO_REUSEPORT`` group while they restart.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: list[tuple[Any, ...]] = []
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in infos:
            if address in seen:
                continue
            seen.append(address)
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            if shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # every address on the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _configure_logging(launch: Launch) -> None:
    configure_logging(launch.log_level, launch.log_format)


def _worker(launch: Launch) -> None:
    """A worker process: serve on the shared port until SIGTERM (sent by the supervisor)."""
    os.setpgrp()  # Ctrl-C reaches the supervisor only; it asks each worker once to stop
    parent = multiprocessing.parent_process()
    if parent is not None:  # stop if the supervisor is killed
        threading.Thread(target=_stop_when_parent_dies, args=(parent,), daemon=True).start()
    _configure_logging(launch)
    launch.serve(reuse_port=True)  # each worker builds its own TLS context (contexts cannot be pickled)


def _stop_when_parent_dies(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os.kill(os.getpid(), signal.SIGTERM)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Supervisor:
    """Starts the workers, restarts the ones that die, and stops them all on SIGINT/SIGTERM."""

    def __init__(self, launch: Launch, workers: int) -> None:
        self.launch = launch
        self.count = workers
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, multiprocessing.process.BaseProcess] = {}
        self.restarts: collections.deque[float] = collections.deque()
        self.signals: list[int] = []  # the signals received: non-empty means stop
        self.wake_read, self.wake_write = os.pipe()

    def start(self, slot: int) -> None:
        process = self.context.Process(target=_worker, args=(self.launch,), name=f"aiows-worker-{slot}")
        process.start()
        self.workers[slot] = process
        _say(f"worker {slot} started (pid {process.pid})")

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        os.write(self.wake_write, b"\0")

    def run(self) -> int:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self.on_signal) for signum in handled}
        try:
            return self._supervise()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self.wake_read)
            os.close(self.wake_write)

    def _supervise(self) -> int:
        for slot in range(1, self.count + 1):
            self.start(slot)
        while not self.signals:
            sentinels: list[Any] = [process.sentinel for process in self.workers.values()]
            multiprocessing.connection.wait([self.wake_read, *sentinels])
            if self.signals:
                break
            for slot, process in list(self.workers.items()):
                if process.is_alive():
                    continue
                process.join()
                if self.launch.metrics_dir is not None and process.pid is not None:
                    from .metrics import mark_dead

                    mark_dead(self.launch.metrics_dir, process.pid)
                now = time.monotonic()
                while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
                    self.restarts.popleft()
                if len(self.restarts) >= MAX_RESTARTS:
                    _say(f"worker {slot} (pid {process.pid}) {_describe_exit(process.exitcode)}")
                    _error(f"workers died {MAX_RESTARTS} times within {RESTART_WINDOW:.0f} s: giving up")
                    return 1
                self.restarts.append(now)
                _say(f"worker {slot} (pid {process.pid}) {_describe_exit(process.exitcode)}; restarting it")
                self.start(slot)
        return 0

    def _stop_all(self) -> None:
        alive = [process for process in self.workers.values() if process.is_alive()]
        if alive:
            _say(f"stopping {len(alive)} worker(s)")
        for process in alive:
            if process.pid is not None:
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                _say(f"worker pid {process.pid} did not stop within {SHUTDOWN_TIMEOUT:.0f} s: killing it")
                process.kill()
                process.join()


def _run_reload(launch: Launch) -> int:
    try:
        import watchfiles
    except ImportError:
        return _error("--reload needs watchfiles: pip install 'aiows[reload]'")
    _say(f"watching {os.path.abspath(launch.app_dir)} for changes")
    watchfiles.run_process(
        launch.app_dir,
        target=_reload_target,
        args=(launch,),
        watch_filter=watchfiles.PythonFilter(),
        callback=lambda changes: _say(f"{len(changes)} file(s) changed: restarting"),
    )
    return 0


def _reload_target(launch: Launch) -> None:
    _configure_logging(launch)
    try:
        launch.serve()
    except AppLoadError as exc:
        _error(str(exc))
