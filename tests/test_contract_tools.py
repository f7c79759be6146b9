"""The contract checked by the real tools: the official AsyncAPI parser and the TypeScript compiler.

``@asyncapi/parser`` and ``typescript`` come from the npm registry, at the
versions pinned below, installed once into a cache directory
(``$AIOWS_NPM_CACHE``, default ``~/.cache/aiows-npm``) and run with Node.
Each example app's document is written by the ``aiows asyncapi`` command, as
a user would, as JSON and as YAML (``--yaml``), and parsed: no error and no warning may come back (the one
diagnostic allowed is the parser's information that AsyncAPI 3.1.0 exists;
docs/guides/contract.md explains it). The parser's AsyncAPI 3 rules do not check message
examples against their payloads: aiows checks each against its model when it
writes it (``tests/test_contract.py``). The TypeScript written by ``aiows typescript`` must
compile with ``tsc --strict`` in a client that uses it, and must stop a client
that sends a wrong field, a wrong value or a wrong ``type``. The tests skip,
saying why, only where ``node`` or ``npm`` is missing (``apt-get install
nodejs npm``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doc_blocks import DOCS, blocks
from npm import npm_packages
from processes import EXAMPLES

#: The npm packages, pinned.
PACKAGES = {"@asyncapi/parser": "3.6.6", "typescript": "7.0.2"}

#: Every example app (module:attribute), and what it needs installed.
EXAMPLE_APPS = {
    "simple_chat:server": [],
    "echo:server": [],
    "middleware_example:server": [],
    "jwt_auth:server": ["jwt"],
    "fastapi_mount:server": ["fastapi"],
}

#: The parser's severities (Spectral's): 0 error, 1 warning, 2 information, 3 hint.
ERROR, WARNING = 0, 1

#: The only diagnostic allowed: the issue asks for AsyncAPI 3.0.0, and the parser points at 3.1.0 (information).
ALLOWED = {"asyncapi-latest-version"}

VALIDATE = """
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");
(async () => {
  const { document, diagnostics } = await new Parser().parse(fs.readFileSync(process.argv[2], "utf8"));
  const found = diagnostics.map((d) => ({ code: d.code, severity: d.severity, message: d.message, path: d.path }));
  console.log(JSON.stringify({ parsed: document !== undefined, diagnostics: found }));
})().catch((error) => { console.error(error); process.exit(2); });
"""


@pytest.fixture(scope="module")
def npm_tools() -> Iterator[Path]:
    """The cache directory with the pinned packages installed (``node_modules`` in it)."""
    root = npm_packages(PACKAGES)
    (root / "validate.js").write_text(VALIDATE)
    yield root


def aiows_command(*args: str, cwd: Path = EXAMPLES) -> str:
    """Run ``python -m aiows ARGS`` in ``cwd`` (the examples) with this interpreter; its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "aiows", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse(tools: Path, document: Path) -> dict[str, Any]:
    """The parser's verdict on a document file: ``{"parsed": bool, "diagnostics": [...]}``."""
    result = subprocess.run(
        ["node", str(tools / "validate.js"), str(document)],
        cwd=tools, capture_output=True, text=True, timeout=120, env=dict(os.environ, NODE_PATH=str(tools / "node_modules")),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    verdict: dict[str, Any] = json.loads(result.stdout)
    return verdict


@pytest.mark.parametrize("form", ["json", "yaml"])
@pytest.mark.parametrize("app", list(EXAMPLE_APPS))
def test_every_example_document_passes_the_asyncapi_parser(npm_tools: Path, app: str, form: str, tmp_path: Path) -> None:
    for module in EXAMPLE_APPS[app]:
        pytest.importorskip(module)
    output = tmp_path / f"asyncapi.{form}"
    if form == "yaml":
        yaml = pytest.importorskip("yaml", reason="--yaml needs PyYAML (aiows[yaml])")
        aiows_command("asyncapi", app, "--yaml", "-o", str(output))
        assert yaml.safe_load(output.read_text()) == json.loads(aiows_command("asyncapi", app))
    else:
        aiows_command("asyncapi", app, "-o", str(output))
    verdict = parse(npm_tools, output)
    assert verdict["parsed"], verdict
    problems = [d for d in verdict["diagnostics"] if d["severity"] in (ERROR, WARNING) or d["code"] not in ALLOWED]
    assert problems == []


def test_the_parser_reports_a_broken_document(npm_tools: Path, tmp_path: Path) -> None:
    """The check above can fail: an operation sending another channel's message, a dangling $ref, a bad reply."""
    document = json.loads(aiows_command("asyncapi", "middleware_example:server"))
    document["channels"]["elsewhere"] = {"address": "/elsewhere", "messages": {}}
    document["operations"]["root.client.echo"]["channel"] = {"$ref": "#/channels/elsewhere"}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))
    severities = {d["code"]: d["severity"] for d in parse(npm_tools, broken)["diagnostics"]}
    assert severities.get("asyncapi3-operation-messages-from-referred-channel") == ERROR, severities
    document = json.loads(aiows_command("asyncapi", "simple_chat:server"))
    join = document["operations"]["root.client.join"]
    for key, value in (("messages", [{"$ref": "#/channels/root/messages/nowhere"}]), ("data", {"type": "object"})):
        operations = {**document["operations"], "root.client.join": {**join, "reply": {**join["reply"], key: value}}}
        broken.write_text(json.dumps({**document, "operations": operations}))
        verdict = parse(npm_tools, broken)  # a reply that is not the reply object, or refers to no message
        assert not verdict["parsed"] and any(d["severity"] == ERROR for d in verdict["diagnostics"]), verdict
    document = json.loads(aiows_command("asyncapi", "middleware_example:server"))
    document["channels"]["root"]["messages"]["client.echo"] = {"$ref": "#/components/messages/nowhere"}
    broken.write_text(json.dumps(document))
    verdict = parse(npm_tools, broken)
    assert not verdict["parsed"] and any(d["severity"] == ERROR for d in verdict["diagnostics"]), verdict


CLIENT = """
import type { ClientMessage, ReplyFrame, RequestReplyMap, ServerMessage } from "./contract";

export function send(socket: { send(data: string): void }, message: ClientMessage): void {
  socket.send(JSON.stringify(message));
}

export function greet(socket: { send(data: string): void }): void {
  send(socket, { type: "join", room: "kitchen" });
  send(socket, { type: "join", room: "kitchen", name: "ann" });
  send(socket, { type: "say", room: "kitchen", text: "hi" });
  send(socket, { type: "chat", text: "hello", user_id: 1 });
}

export function show(message: ServerMessage): string {
  switch (message.type) {
    case "said":
      return `${message.name}: ${message.text} (${message.room} #${message.offset} in ${message.epoch})`;
    case "members":
      return `${message.count} in ${message.room}`;
    case "error":
      return message.code === "not_in_room" ? "join first" : `${message.code}: ${message.message}`;
    default:
      return message.type;
  }
}

export function joined(reply: ReplyFrame<RequestReplyMap["join"]>): string {
  return `${reply.data.room}: ${reply.data.members} here, recovered: ${reply.data.recovered}`;
}

export function said(reply: ReplyFrame<RequestReplyMap["say"]>): unknown {
  return reply.data;
}
"""

#: A mistake a client could make -> (the line of CLIENT it replaces, the bad line).
MISTAKES = {
    "misspelt field": ('{ type: "join", room: "kitchen" }', '{ type: "join", rooom: "kitchen" }'),
    "missing field": ('{ type: "say", room: "kitchen", text: "hi" }', '{ type: "say", room: "kitchen" }'),
    "wrong value": ("user_id: 1 }", 'user_id: "1" }'),
    "wrong type": ('{ type: "join", room: "kitchen" }', '{ type: "jion", room: "kitchen" }'),
    "unknown server field": ("${message.count} in", "${message.counts} in"),
    "unknown error code": ('"not_in_room"', '"not_in_a_room"'),
    "wrong field of a typed reply": ("${reply.data.members} here", "${reply.data.member} here"),
    "a field of an untyped reply": ("return reply.data;", "return reply.data.room;"),
    "a room field where the room adds none": ("${message.count} in ${message.room}", "${message.count} in ${message.offset}"),
}


def tsc(tools: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    command = [str(tools / "node_modules" / ".bin" / "tsc"), "--strict", "--noEmit", "--target", "es2022"]
    command += ["--module", "esnext", "--moduleResolution", "bundler", "client.ts"]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def declarations(npm_tools: Path) -> str:
    return aiows_command("typescript", "simple_chat:server")


def test_a_client_using_the_typescript_declarations_compiles(npm_tools: Path, declarations: str, tmp_path: Path) -> None:
    (tmp_path / "contract.ts").write_text(declarations)
    (tmp_path / "client.ts").write_text(CLIENT)
    result = tsc(npm_tools, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_client_that_breaks_the_contract_does_not_compile(
    npm_tools: Path, declarations: str, tmp_path: Path, mistake: str
) -> None:
    good, bad = MISTAKES[mistake]
    assert CLIENT.count(good) == 1
    (tmp_path / "contract.ts").write_text(declarations)
    (tmp_path / "client.ts").write_text(CLIENT.replace(good, bad))
    result = tsc(npm_tools, tmp_path)
    assert result.returncode != 0 and "error TS" in result.stdout, result.stdout + result.stderr


def test_every_example_declarations_compile(npm_tools: Path, tmp_path: Path) -> None:
    for app, modules in EXAMPLE_APPS.items():
        if any(importlib.util.find_spec(module) is None for module in modules):
            continue
        (tmp_path / "contract.ts").write_text(aiows_command("typescript", app))
        (tmp_path / "client.ts").write_text('import type { ClientMessage, ServerMessage } from "./contract";\n'
                                             "export type Both = ClientMessage | ServerMessage;\n")
        result = tsc(npm_tools, tmp_path)
        assert result.returncode == 0, f"{app}: {result.stdout}{result.stderr}"


def test_the_contract_guides_typescript_block_compiles_against_its_app(npm_tools: Path, tmp_path: Path) -> None:
    guide = blocks(DOCS / "guides" / "contract.md")
    (app,) = [block.code for block in guide if block.language == "python" and "emits=" in block.code]
    (client,) = [block.code for block in guide if block.language == "ts"]
    (tmp_path / "guide_app.py").write_text(app.replace("server.run(", "# server.run("))
    (tmp_path / "messages.ts").write_text(aiows_command("typescript", "guide_app:server", cwd=tmp_path))
    (tmp_path / "client.ts").write_text(client)
    command = [str(npm_tools / "node_modules" / ".bin" / "tsc"), "--strict", "--noEmit", "--target", "es2022"]
    command += ["--lib", "es2022,dom", "--module", "esnext", "--moduleResolution", "bundler", "client.ts"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for good, bad in (('type: "say"', 'type: "sya"'), ("reply.data.count)", "reply.data.cuont)")):  # its comments' claims
        assert good in client
        (tmp_path / "client.ts").write_text(client.replace(good, bad))
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0 and "error TS" in result.stdout, result.stdout
