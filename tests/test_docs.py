"""Every code block of the documentation (``README.md`` and ``docs/**/*.md``) works as written.

- ``python``: each block runs as a script of its own (``run()`` starts and stops at once) and passes
  ``mypy --strict`` as a user's own code would: each block is a module in a fresh directory outside the
  repository, type-checked against the installed aiows with no configuration file. A block marked
  ``<!-- fragment -->`` (tests/doc_blocks.py) must parse.
- ``bash``: the files a command names exist, the extras it installs are declared, the ``aiows`` options it
  passes are the command's own.
- ``ini``, ``toml`` and ``yaml``: they parse (``yaml`` with PyYAML, skipped without it).
- ``html``: each inline ``<script>`` parses as JavaScript (``node --check``; skipped without Node).
- ``ts``: only in the contract guide, whose TypeScript tests/test_contract_tools.py compiles with ``tsc --strict``.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: mypy's own TOML parser, installed with it
    import tomli as tomllib

from aiows import WebSocketServer
from aiows.testing import TestClient
from certs import Certs, make_certs
from doc_blocks import DOCS, README, ROOT, Block, all_blocks, blocks

LANGUAGES = {"python", "bash", "ini", "toml", "yaml", "html", "ts"}
COMMANDS = ("", "run", "asyncapi", "typescript")
PYTHON = [block for block in all_blocks("python") if not block.fragment]
FRAGMENTS = [block for block in all_blocks("python") if block.fragment]

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


def ids(items: list[Block]) -> list[str]:
    return [block.name for block in items]


def test_the_pages_have_blocks() -> None:
    assert len(PYTHON) >= 20
    assert blocks(README), "the README shows code"


@pytest.mark.parametrize("block", all_blocks(), ids=ids(all_blocks()))
def test_every_block_names_a_checked_language(block: Block) -> None:
    assert block.language in LANGUAGES, f"{block.name}: a ```{block.language} block is not checked; use one of {LANGUAGES}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("doc-certs"))


@pytest.mark.parametrize("block", PYTHON, ids=ids(PYTHON))
def test_python_block_runs(block: Block, tmp_path: Path, certs: Certs) -> None:
    # The TLS block's cert.pem and key.pem, in the directory it runs in.
    shutil.copy(certs.server, tmp_path / "cert.pem")
    shutil.copy(certs.server_key, tmp_path / "key.pem")
    script = tmp_path / "snippet.py"
    script.write_text(PRELUDE + block.code)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{block.name}:\n{result.stderr}"


def test_python_fragments_parse() -> None:
    for block in FRAGMENTS:
        ast.parse(block.code, block.name)


def test_a_fragment_is_marked_right_above_its_fence(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n<!-- fragment -->\n```python\nawait x\n```\n\n```python\nx = 1\n```\n")
    assert [(block.line, block.fragment, block.code) for block in blocks(page)] == [(4, True, "await x\n"), (8, False, "x = 1\n")]


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run ``mypy --strict`` once over every block (one module each); return the error lines by module name."""
    pytest.importorskip("mypy", reason="the documentation's code is type-checked with mypy (pip install '.[test]')")
    directory = tmp_path_factory.mktemp("doc-blocks")
    for block in PYTHON:
        (directory / f"{block.module}.py").write_text(block.code)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MYPY")}
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file=", "--cache-dir", str(directory / ".cache")]
    result = subprocess.run(
        [*command, *(f"{block.module}.py" for block in PYTHON)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), f"mypy did not run:\n{result.stdout}{result.stderr}"
    errors: dict[str, list[str]] = {block.module: [] for block in PYTHON}
    for line in result.stdout.splitlines():
        module = line.partition(".py:")[0]
        if module in errors:
            errors[module].append(line)
    assert result.returncode == 0 or any(errors.values()), result.stdout
    return errors


@pytest.mark.parametrize("block", PYTHON, ids=ids(PYTHON))
def test_python_block_passes_mypy_strict(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    assert mypy_errors[block.module] == [], "\n".join(mypy_errors[block.module])


@pytest.fixture(scope="module")
def aiows_options() -> dict[str, str]:
    """What ``aiows --help`` and each ``aiows COMMAND --help`` print, by command (``""`` for the top level)."""
    run = [sys.executable, "-m", "aiows"]
    return {
        command: subprocess.run([*run, *command.split(), "--help"], capture_output=True, text=True, check=True).stdout
        for command in COMMANDS
    }


def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block (split at ``&&``, ``|``, ``;`` and ``&``), comments left out."""
    found: list[list[str]] = []
    for line in code.splitlines():
        words: list[str] = []
        for word in shlex.split(line, comments=True):
            if word in ("&&", "||", "|", ";", "&"):
                found.append(words)
                words = []
            else:
                words.append(word)
        found.append(words)
    return [words for words in found if words]


def problems(words: list[str], options: dict[str, str]) -> list[str]:
    """What is wrong with one command of a shell block: files that do not exist, unknown extras and options."""
    program, *args = words
    wrong = []
    if program in ("python", "python3", "pytest"):
        for arg in args:
            path = arg.partition("::")[0]
            if path.endswith(".py") or path.startswith(("tests/", "examples/", "benchmarks/")):
                if not (ROOT / path).exists():
                    wrong.append(f"{path} does not exist")
    if program == "pip":
        for arg in args:
            if "[" in arg and arg.endswith("]"):
                wrong += [f"no extra {extra!r}" for extra in arg[arg.index("[") + 1 : -1].split(",") if extra not in extras()]
        if "-r" in args and not (ROOT / args[args.index("-r") + 1]).exists():
            wrong.append(f"{args[args.index('-r') + 1]} does not exist")
    if program == "aiows":
        command = args[0] if args and not args[0].startswith("-") else ""
        if command not in options:
            return [f"aiows has no command {command!r}"]
        for arg in args:
            if arg.startswith("-") and f" {arg.partition('=')[0]} " not in options[command].replace("\n", " ").replace(",", " "):
                wrong.append(f"aiows {command} has no option {arg}")
    return wrong


BASH = all_blocks("bash")


@pytest.mark.parametrize("block", BASH, ids=ids(BASH))
def test_bash_block_names_what_exists(block: Block, aiows_options: dict[str, str]) -> None:
    wrong = [problem for words in commands(block.code) for problem in problems(words, aiows_options)]
    assert wrong == [], f"{block.name}: {wrong}"


def test_the_bash_check_finds_what_is_wrong(aiows_options: dict[str, str]) -> None:
    code = 'pip install ".[test,nosuch]" && python examples/nosuch.py\naiows run app:server --workers 2 --nosuch  # x'
    code += "\naiows typescript app:server -o x.ts -z\naiows nosuch app:server"
    found = [problem for words in commands(code) for problem in problems(words, aiows_options)]
    assert found == [
        "no extra 'nosuch'", "examples/nosuch.py does not exist", "aiows run has no option --nosuch",
        "aiows typescript has no option -z", "aiows has no command 'nosuch'",
    ]  # fmt: skip


@pytest.mark.parametrize("block", all_blocks("ini"), ids=ids(all_blocks("ini")))
def test_ini_block_parses(block: Block) -> None:
    configparser.ConfigParser().read_string(block.code)


@pytest.mark.parametrize("block", all_blocks("toml"), ids=ids(all_blocks("toml")))
def test_toml_block_parses(block: Block) -> None:
    tomllib.loads(block.code)


def test_the_readmes_links_reach_files_of_the_repository() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [target.partition("#")[0] for target in targets if "://" not in target]
    assert local, "the README links into docs/"
    assert [target for target in local if not (ROOT / target).exists()] == []


@pytest.mark.parametrize("block", all_blocks("yaml"), ids=ids(all_blocks("yaml")))
def test_yaml_block_parses(block: Block) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the yaml blocks")
    assert isinstance(yaml.safe_load(block.code), dict), block.name


HTML = all_blocks("html")


@pytest.mark.parametrize("block", HTML, ids=ids(HTML))
def test_html_block_scripts_parse(block: Block, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("needs Node (apt-get install nodejs)")
    scripts = re.findall(r"<script>(.*?)</script>", block.code, flags=re.DOTALL)
    assert scripts, f"{block.name}: no inline script"
    for number, script in enumerate(scripts):
        path = tmp_path / f"script{number}.js"
        path.write_text(script)
        result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{block.name}:\n{result.stderr}"


def test_typescript_blocks_are_the_contract_guides() -> None:
    pages = {block.page for block in all_blocks("ts")}
    assert pages == {DOCS / "guides" / "contract.md"}, "tests/test_contract_tools.py compiles only that page's ts"


def load_block(page: Path, marker: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the one python block of ``page`` that contains ``marker`` with ``run()`` made a no-op; return its globals."""
    (block,) = [block for block in blocks(page) if block.language == "python" and marker in block.code]
    monkeypatch.setattr(WebSocketServer, "run", lambda self, host="localhost", port=8000, **options: None)
    namespace: dict[str, Any] = {"__name__": "doc_block"}
    exec(compile(block.code, block.name, "exec", dont_inherit=True), namespace)  # no __future__ of ours
    return namespace


async def test_rooms_block_serves_the_messages_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    server = load_block(DOCS / "guides" / "rooms.md", "class Say(Room):", monkeypatch)["server"]
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
