"""aiows uses only the public, documented APIs of its dependencies: checked in its source.

Every ``obj._name`` in the package must be an attribute aiows defines itself,
every ``from module import _name`` must come from aiows, and the private
attributes of ``websockets`` that aiows read before it owned its connections
(``recv_messages``, ``send_in_progress``...) must not come back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aiows

PACKAGE = Path(aiows.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: Private insides of ``websockets.asyncio.connection.Connection`` that aiows used to read.
FORMER = {"recv_messages", "get_in_progress", "maybe_resume", "send_in_progress", "send_data", "connection_lost_waiter"}


def private(name: str) -> bool:
    """``_name``, not ``__dunder__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in SOURCES]


def own_private_names() -> set[str]:
    """Every ``_name`` aiows assigns, defines or declares (its own private attributes and helpers)."""
    names: set[str] = set()
    for _, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return {name for name in names if name.startswith("_")}


def test_the_package_sources_are_found() -> None:
    assert len(SOURCES) > 20
    assert PACKAGE / "transports" / "websockets.py" in SOURCES


def test_no_private_attribute_of_a_dependency_is_read() -> None:
    own = own_private_names()
    foreign: list[str] = []
    for path, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                name = node.attr
                if private(name) and name not in own:
                    foreign.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: .{name}")
                if name in FORMER:
                    foreign.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: .{name} (websockets' insides)")
    assert foreign == []


def test_nothing_private_is_imported_from_a_dependency() -> None:
    imported: list[str] = []
    for path, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith("aiows"):
                module = node.module or ""
                if any(private(part) for part in module.split(".")):
                    imported.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: from {module}")
                for alias in node.names:
                    if private(alias.name):
                        imported.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        imported.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: import {alias.name}")
    assert imported == []
