"""Autobahn|Testsuite conformance: aiows' echo example beside plain ``websockets``, case by case.

    python benchmarks/conformance.py                # every case: 30-40 minutes on 2 shared cores
    python benchmarks/conformance.py --deflate-max-size 8192   # what CI runs: about 4 minutes
    python benchmarks/conformance.py --quick        # a handful of cases: a smoke run (about 10 s)
    python benchmarks/conformance.py --report DIR   # keep the fuzzing client's HTML/JSON report in DIR
    python benchmarks/conformance.py --allow 'aiows-picows:3.*,7.9.1'   # known regressions: printed, not failed

The Autobahn|Testsuite's fuzzing client (``wstest -m fuzzingclient``) runs, in one
run, against echo servers, each in its own process on a free port of 127.0.0.1:

- ``websockets``: plain ``websockets``' own echo (``async for message in ws: await ws.send(message)``),
  the reference every aiows server is compared with;
- ``aiows``: ``examples/echo.py`` on the default transport;
- ``aiows-picows``: ``examples/echo.py --transport picows`` (skipped with a note without picows);
- and each of them again with ``compression="deflate"`` (``-deflate``).

The servers without compression get cases 1.* to 10.* (framing, pings, reserved
bits, opcodes, fragmentation, UTF-8, closing, limits, auto-fragmentation); the deflate ones get the
permessage-deflate cases 12.* and 13.* only. The client offers permessage-deflate
in 12.*/13.* alone, so 1.*-10.* against a deflate server would repeat the same
uncompressed connections, and 12.*/13.* against a server without it only say
UNIMPLEMENTED. The deflate cases take nine-tenths of the time (1000 messages each,
echoed one at a time, up to 128 KiB, some cut into 256-byte frames; the Python 2
client is the bottleneck): ``--deflate-max-size 8192`` keeps those with messages
up to 8 KiB (12.x.1-6, 12.x.11 and the same 13.x.n), a tenth of their time.

The suite needs Python 2.7. It is found as ``--python2 PATH``, pyenv's 2.7.18 or
``python2.7`` on PATH; without one the run is skipped (exit 0) and says why. The
suite is installed, with pinned versions known to work together (``PINS``), into
a Python 2.7 virtualenv cached in ``~/.cache/aiows-autobahn/venv`` (``--cache``)
and reused while it works. An install that fails is skipped with its reason
(exit 0), or fails the run with ``--strict-setup`` (exit 2).

A case passes when the report's ``behavior`` is ``OK``, ``NON-STRICT`` or
``INFORMATIONAL`` and its ``behaviorClose`` is neither ``FAILED`` nor ``UNCLEAN``
(the HTML report's own colours: a ``WRONG CODE`` or ``FAILED BY CLIENT`` close is
yellow, not red); ``FAILED``, ``UNIMPLEMENTED`` and ``NO CLOSE`` behaviours fail,
and so does a case that the reference server ran and an aiows server did not (it
died). For each server it prints the cases run and the failing ones; for each
aiows server, its regressions: the cases it fails that ``websockets`` with the same
compression passes. Exit status: 1 when an aiows server has a regression that
``--allow`` does not list, 2 when the run could not be done (the ``--timeout``, a
server that does not start, a failed setup with ``--strict-setup``), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ECHO = HERE.parent / "examples" / "echo.py"
HOST = "127.0.0.1"

#: The suite and the versions it is known to run with on Python 2.7 (its own requirements.txt, less
#: setuptools): ``autobahntestsuite`` goes in with ``--no-deps`` over them.
SUITE = "autobahntestsuite==25.10.1"
PINS = (
    "autobahn[twisted,accelerate]==0.10.9",
    "Twisted==19.10.0",
    "txaio==2.1.0",
    "zope.interface==4.6.0",
    "pyOpenSSL==19.1.0",
    "cryptography==3.3.2",
    "service_identity==18.1.0",
    "klein==17.10.0",
    "Werkzeug==1.0.1",
    "jinja2==2.11.3",
    "markupsafe==1.1.1",
    "incremental==16.10.1",
    "unittest2==1.1.0",
    "six==1.16.0",
)
#: The last virtualenv that still makes Python 2.7 environments, and a pip that still runs on 2.7.
VIRTUALENV = "virtualenv==20.21.1"
PIP27 = "pip<21"

#: permessage-deflate (RFC 7692) cases: run against the deflate servers only.
DEFLATE_CASES = ("12.*", "13.*")
#: The message size of each deflate case 12.x.n / 13.x.n, at index n - 1 (the suite's ``MSG_SIZES``):
#: 1000 messages each, echoed one at a time; n 11-18 cut them into frames of 256 bytes to 32 KiB.
DEFLATE_MESSAGE_SIZES = (16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072) + (
    8192, 16384, 32768, 65536, 131072, 131072, 131072, 131072
)
#: Every other case (the suite has no 8.* or 11.*): run against the servers without compression only.
PLAIN_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")
#: ``--quick``: one case or a few of each kind.
QUICK_CASES = ("1.1.1", "2.*", "3.*", "5.1", "7.1.*", "12.1.1")

PASSING_BEHAVIORS = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
FAILING_CLOSES = frozenset({"FAILED", "UNCLEAN"})


class SetupError(Exception):
    """The suite could not be installed (the message says why)."""


class RunError(Exception):
    """The run could not be done (the message says why)."""


@dataclass(frozen=True)
class Server:
    """One echo server: its report name, how to start it on a port, what it is compared with."""

    agent: str
    argv: tuple[str, ...]
    deflate: bool = False
    reference: str | None = None  # the websockets server an aiows server is compared with
    needs: str | None = None  # a module it cannot run without

    def command(self, port: int) -> list[str]:
        return [sys.executable, *self.argv, str(port)]


def echo_servers() -> list[Server]:
    """websockets' echo, then examples/echo.py on each transport, each without and with deflate."""
    servers = []
    for deflate in (False, True):
        suffix = "-deflate" if deflate else ""
        compression = ("--compression", "deflate") if deflate else ()
        reference = f"websockets{suffix}"
        servers += [
            Server(reference, (str(Path(__file__).resolve()), "--websockets-echo", *compression), deflate),
            Server(f"aiows{suffix}", (str(ECHO), "--host", HOST, *compression), deflate, reference),
            Server(
                f"aiows-picows{suffix}",
                (str(ECHO), "--host", HOST, "--transport", "picows", *compression),
                deflate,
                reference,
                needs="picows",
            ),
        ]
    return servers


# --- the reference server -------------------------------------------------------------------------------


async def websockets_echo(port: int, compression: str | None) -> None:
    """Plain ``websockets``' own echo server, as its documentation writes it, until killed."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(websocket: ServerConnection) -> None:
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, HOST, port, max_size=16 * 2**20, compression=compression):
        await asyncio.Future()


# --- Python 2.7 and the suite ---------------------------------------------------------------------------


def python2_candidates(explicit: str | None) -> list[str]:
    """Where to look for Python 2.7, in order: ``--python2``, pyenv's 2.7.18, ``python2.7`` on PATH."""
    if explicit:
        return [explicit]
    candidates = []
    pyenv = shutil.which("pyenv")
    root = os.environ.get("PYENV_ROOT")
    if pyenv and not root:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = None
    for base in (root, str(Path.home() / ".pyenv")):
        if base:
            candidates.append(str(Path(base) / "versions" / "2.7.18" / "bin" / "python"))
    on_path = shutil.which("python2.7")
    if on_path:
        candidates.append(on_path)
    return list(dict.fromkeys(candidates))


def is_python27(path: str) -> bool:
    try:
        probe = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0 and probe.stdout.strip() == "2.7"


def find_python2(explicit: str | None) -> tuple[str | None, list[str]]:
    """The first working Python 2.7, and every place tried."""
    tried = python2_candidates(explicit)
    return next((path for path in tried if is_python27(path)), None), tried


def stamp(python2: str) -> str:
    """What the cached virtualenv was made with: it is made anew when this changes."""
    return "\n".join((python2, VIRTUALENV, PIP27, *PINS, SUITE)) + "\n"


def suite_works(venv: Path, python2: str) -> bool:
    """The cached virtualenv was made from ``python2`` with this script's pins, and its ``wstest`` starts."""
    try:
        if (venv / "aiows-pins.txt").read_text() != stamp(python2):
            return False
        probe = subprocess.run([str(venv / "bin" / "wstest"), "-a"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0 and "AutobahnTestSuite " + SUITE.split("==")[1] in probe.stdout


def setup_step(argv: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> None:
    """Run one install step, appending its output to ``log``; raise ``SetupError`` with its tail if it fails."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise SetupError(f"{' '.join(argv[:4])} ...: no end after {timeout:.0f} s (log: {log})") from exc
        except OSError as exc:
            raise SetupError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n    ".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SetupError(f"{' '.join(argv[:4])} ... exited with {done.returncode} (log: {log}):\n    {tail}")


def install_suite(python2: str, cache: Path, deadline: float) -> Path:
    """The cached virtualenv with the suite: reused when it works, else made anew. Returns its directory."""
    venv = cache / "venv"
    if suite_works(venv, python2):
        return venv
    print(f"conformance: installing the Autobahn|Testsuite into {venv} (a minute or two, once)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "setup.log"
    log.write_text("")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONWARNINGS": "ignore"}

    def left() -> float:
        return max(deadline - time.monotonic(), 1.0)

    tool = cache / VIRTUALENV.replace("==", "-")
    if not (tool / "virtualenv").is_dir():
        setup_step([sys.executable, "-m", "pip", "install", "-q", "--target", str(tool), VIRTUALENV], log, left(), env)
    tool_env = {**env, "PYTHONPATH": str(tool)}
    make = [sys.executable, "-m", "virtualenv", "--app-data", str(cache / "app-data"), "-p", python2, str(venv)]
    setup_step(make, log, left(), tool_env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input"]
    setup_step([*pip, PIP27], log, left(), env)
    setup_step([*pip, *PINS], log, left(), env)
    setup_step([*pip, "--no-deps", SUITE], log, left(), env)
    (venv / "aiows-pins.txt").write_text(stamp(python2))
    if not suite_works(venv, python2):
        raise SetupError(f"wstest does not start in {venv} after the install (log: {log})")
    return venv


# --- the servers and the run ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group, SIGKILL it after 5 s; wait for it."""
    for signum, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to add processes to; every one is stopped on the way out, whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            stop(process)


def start(command: list[str], started: list[subprocess.Popen[bytes]], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group (Ctrl-C reaches this script only), output to ``log``."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started.append(process)
    return process


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Poll until ``process`` listens on ``port``; ``RunError`` with its output if it exits or never does."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RunError(f"exited with {process.returncode}: {log.read_text(errors='replace').strip()[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RunError(f"nothing listened on {HOST}:{port} within {timeout:.0f} s")


@dataclass(frozen=True)
class Running:
    """A started server: where it listens, its process and its output."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path


def start_servers(servers: Sequence[Server], started: list[subprocess.Popen[bytes]], work: Path) -> dict[str, Running]:
    """Start every server on its own free port; return them by agent once all of them listen."""
    running = {}
    for server in servers:
        port = free_port()
        log = work / f"{server.agent}.log"
        running[server.agent] = Running(port, start(server.command(port), started, log), log)
    for agent, each in running.items():
        try:
            wait_for_port(each.port, each.process, each.log)
        except RunError as exc:
            raise RunError(f"server {agent} did not start: {exc}") from exc
    return running


def report_exits(running: dict[str, Running]) -> None:
    """Say which servers died during the run (their remaining cases are missing from the report)."""
    for agent, each in running.items():
        if each.process.poll() is not None:
            output = each.log.read_text(errors="replace").strip()[-1500:]
            print(f"conformance: server {agent} exited with {each.process.returncode} during the run:\n{output}")


def excluded_cases(deflate: bool, deflate_max_size: int | None) -> list[str]:
    """The case patterns a server does not run: the other kind's, and deflate cases over the size limit."""
    if not deflate:
        return list(DEFLATE_CASES)
    too_big = [n for n, size in enumerate(DEFLATE_MESSAGE_SIZES, 1) if deflate_max_size is not None and size > deflate_max_size]
    return [*PLAIN_CASES, *(f"{group[:-1]}*.{n}" for group in DEFLATE_CASES for n in too_big)]


def spec_for(
    servers: Sequence[Server], running: dict[str, Running], cases: Sequence[str], deflate_max_size: int | None, outdir: Path
) -> dict[str, Any]:
    """The fuzzing client's spec: every server, the cases asked for, each case kind only where it belongs."""
    excluded = {server.agent: excluded_cases(server.deflate, deflate_max_size) for server in servers}
    return {
        "outdir": str(outdir),
        "servers": [{"agent": server.agent, "url": f"ws://{HOST}:{running[server.agent].port}"} for server in servers],
        "cases": list(cases),
        "exclude-cases": [],
        "exclude-agent-cases": excluded,
    }


def last_case(log: Path) -> str:
    """The last "Running test case ..." line of the fuzzing client's output: where it was when it stopped."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("Running test case")]
    return lines[-1] if lines else "(no case started)"


def run_suite(
    wstest: Path, spec: Path, work: Path, started: list[subprocess.Popen[bytes]], deadline: float, started_at: float
) -> None:
    """Run the fuzzing client under ``nice`` until it finishes or the deadline passes; print each server's start."""
    log = work / "wstest.log"
    command = [str(wstest), "-m", "fuzzingclient", "-s", str(spec)]
    if shutil.which("nice"):
        command = ["nice", "-n", "10", *command]
    process = start(command, started, log)
    announced: set[str] = set()
    while True:
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("Running test case") and " for agent " in line:
                agent = line.split(" for agent ")[1].split()[0]
                if agent not in announced:
                    announced.add(agent)
                    elapsed = time.monotonic() - started_at
                    print(f"conformance: [{elapsed:5.0f} s] running the cases against {agent}", flush=True)
        if process.returncode is not None:
            break
        if time.monotonic() > deadline:
            raise RunError(f"the fuzzing client did not finish in time; it was at: {last_case(log)}")
    if process.returncode != 0:
        tail = "\n    ".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RunError(f"the fuzzing client exited with {process.returncode}:\n    {tail}")


# --- the report -----------------------------------------------------------------------------------------


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def passes(result: dict[str, Any]) -> bool:
    """The rule for one case of ``index.json`` (see the module docstring)."""
    return result.get("behavior") in PASSING_BEHAVIORS and result.get("behaviorClose") not in FAILING_CLOSES


def failing(results: dict[str, dict[str, Any]]) -> list[str]:
    return sorted((case for case, result in results.items() if not passes(result)), key=case_key)


def ranges(cases: Sequence[str], order: Sequence[str]) -> str:
    """``cases`` written compactly: runs of cases adjacent in ``order`` as ``first-last``."""
    position = {case: index for index, case in enumerate(order)}
    spans: list[list[str]] = []
    for case in sorted(cases, key=case_key):
        if spans and position.get(case) == position.get(spans[-1][-1], -2) + 1:
            spans[-1].append(case)
        else:
            spans.append([case])
    return ", ".join(span[0] if len(span) == 1 else f"{span[0]}-{span[-1]}" for span in spans) or "none"


def allowed(agent: str, case: str, patterns: Sequence[str]) -> bool:
    """Whether ``--allow`` lists this case (``CASE`` for every server, or ``SERVER:CASE``; both may use ``*``)."""
    for pattern in patterns:
        server_pattern, _, case_pattern = pattern.rpartition(":")
        if fnmatch.fnmatchcase(agent, server_pattern or "*") and fnmatch.fnmatchcase(case, case_pattern):
            return True
    return False


def with_missing(results: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``results`` plus, as failed, the cases its reference ran and it did not (a server that died mid-run)."""
    missing = {"behavior": "MISSING", "behaviorClose": "MISSING"}
    return {**{case: missing for case in reference if case not in results}, **results}


def summarize(report: dict[str, dict[str, dict[str, Any]]], servers: Sequence[Server], allow: Sequence[str]) -> int:
    """Print each server's failing cases and each aiows server's regressions; return how many are not allowed."""
    not_allowed = 0
    for server in servers:
        reference = report.get(server.reference or server.agent, {})
        results = with_missing(report.get(server.agent, {}), reference)
        order = sorted(results, key=case_key)
        failed = failing(results)
        print(f"  {server.agent:<22} {len(results):>4} cases, {len(failed):>3} failing: {ranges(failed, order)}")
        if server.reference is None:
            continue
        regressions = [case for case in failed if case in reference and passes(reference[case])]
        if not regressions:
            continue
        excused = [case for case in regressions if allowed(server.agent, case, allow)]
        unexcused = [case for case in regressions if case not in excused]
        not_allowed += len(unexcused)
        detail = "; ".join(
            f"{case} {results[case].get('behavior')}/{results[case].get('behaviorClose')}" for case in regressions
        )
        print(f"  {'':<22} regressions (passed by {server.reference}): {ranges(unexcused, order)}", end="")
        print(f" (allowed: {ranges(excused, order)})" if excused else "")
        print(f"  {'':<22}   behavior/close: {detail}")
    return not_allowed


def versions(python2: str) -> str:
    """What is tested with what, for the log."""
    found = []
    for package in ("aiows", "websockets", "picows"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    try:
        import aiows

        found[0] += f" (compiled: {aiows.COMPILED})"
    except ImportError:
        pass
    return f"{', '.join(found)}; {SUITE.replace('==', ' ')} on Python 2.7 ({python2})"


# --- main -----------------------------------------------------------------------------------------------


def skip(reason: str, fail: bool = False) -> int:
    print(f"conformance: {'failed' if fail else 'skipped'}: {reason}", flush=True)
    return 2 if fail else 0


def describe(args: argparse.Namespace) -> str:
    if args.quick:
        return "quick run (" + ", ".join(QUICK_CASES) + ")"
    if args.deflate_max_size is not None:
        return f"every case, except the deflate ones with messages over {args.deflate_max_size} bytes"
    return "every case"


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def conformance(args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    deadline = started_at + args.timeout
    python2, tried = find_python2(args.python2)
    if python2 is None:
        return skip(f"no Python 2.7 found (tried: {', '.join(tried) or 'nothing'}; give one with --python2 PATH)")
    try:
        venv = install_suite(python2, Path(args.cache).expanduser(), deadline)
    except SetupError as exc:
        return skip(f"the Autobahn|Testsuite could not be installed: {exc}", fail=args.strict_setup)
    print(f"conformance: {versions(python2)}", flush=True)
    servers = echo_servers()
    for server in [server for server in servers if server.needs and importlib.util.find_spec(server.needs) is None]:
        print(f"conformance: {server.agent} skipped: {server.needs} is not installed", flush=True)
        servers.remove(server)
    cases = QUICK_CASES if args.quick else ("*",)
    with tempfile.TemporaryDirectory(prefix="aiows-conformance-") as temporary, processes() as started:
        work = Path(temporary)
        outdir = Path(args.report).resolve() if args.report else work / "report"
        try:
            running = start_servers(servers, started, work)
            spec = work / "spec.json"
            spec.write_text(json.dumps(spec_for(servers, running, cases, args.deflate_max_size, outdir), indent=2))
            run_suite(venv / "bin" / "wstest", spec, work, started, deadline, started_at)
            report_exits(running)
            report = json.loads((outdir / "index.json").read_text())
        except RunError as exc:
            print(f"conformance: failed: {exc}", flush=True)
            return 2
    print(f"conformance: {describe(args)}{f' (report in {outdir})' if args.report else ''}:")
    not_allowed = summarize(report, servers, args.allow)
    print(f"conformance: {time.monotonic() - started_at:.0f} s in all")
    if not_allowed:
        print(f"conformance: {not_allowed} regression(s) against plain websockets (see above)")
        return 1
    print("conformance: no regression against plain websockets")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only " + ", ".join(QUICK_CASES))
    parser.add_argument("--report", metavar="DIR", help="write the fuzzing client's report here (default: a temp dir)")
    parser.add_argument(
        "--allow", metavar="CASES", default="", help="comma list of known regressions ([SERVER:]CASE, * wildcards)"
    )
    parser.add_argument(
        "--deflate-max-size",
        type=int,
        metavar="BYTES",
        help="skip the 12.*/13.* cases whose messages are larger (8192: a tenth of their time; CI's choice)",
    )
    parser.add_argument("--python2", metavar="PATH", help="the Python 2.7 to run the suite with")
    parser.add_argument("--cache", default="~/.cache/aiows-autobahn", help="where the suite's virtualenv is kept")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole run (default 60 min)")
    parser.add_argument("--strict-setup", action="store_true", help="a failed install fails the run (exit 2)")
    parser.add_argument("--websockets-echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compression", choices=("deflate",), help=argparse.SUPPRESS)
    parser.add_argument("port", nargs="?", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.websockets_echo:
        asyncio.run(websockets_echo(args.port, args.compression))
        return
    args.allow = [pattern.strip() for pattern in args.allow.split(",") if pattern.strip()]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (``cmd &``)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(conformance(args))
    except KeyboardInterrupt:
        print("conformance: interrupted; every server and the fuzzing client are stopped", flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
