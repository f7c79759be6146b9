"""Every public name of the package has a docstring (the reference pages are generated from them).

Checked in the source (the compiled build keeps no comments): each module; each class and function that its
``__all__`` lists (or, without one, that has no leading underscore); each public method of those classes,
unless it overrides a documented method of an aiows base class or implements a library's callback (a class
with a base from outside aiows: ``asyncio.BufferedProtocol``, ``logging.Filter``...) or is an ``@overload``
signature; each public module
constant, documented by a ``#:`` comment on the line above it or a string right below it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import aiows

PACKAGE = Path(aiows.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def public_names(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "__all__" for target in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def is_public(name: str, listed: set[str] | None) -> bool:
    return name in listed if listed is not None else not name.startswith("_")


def overload(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """An ``@overload`` signature: the implementation below it carries the docstring."""
    return any(getattr(decorator, "id", getattr(decorator, "attr", "")) == "overload" for decorator in function.decorator_list)


def classes() -> dict[str, ast.ClassDef]:
    """Every class of the package by name (aiows' class names are unique)."""
    found: dict[str, ast.ClassDef] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                found[node.name] = node
    return found


def documented_elsewhere(cls: ast.ClassDef, method: str, index: dict[str, ast.ClassDef]) -> bool:
    """Whether ``method`` overrides a documented method of a base, or ``cls`` has a base from outside aiows."""
    for base in cls.bases:
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        if name in ("Protocol", "Generic", "object"):
            continue
        if name not in index:
            return True  # a library's base class: the method is its callback, documented there
        parent = index[name]
        for node in parent.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == method:
                if ast.get_docstring(node):
                    return True
        if documented_elsewhere(parent, method, index):
            return True
    return False


def undocumented(path: Path, index: dict[str, ast.ClassDef], root: Path = PACKAGE.parent) -> list[str]:
    """What is undocumented in one module, as ``path:line name``."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    where = path.relative_to(root)
    missing = [] if ast.get_docstring(tree) else [f"{where}: the module"]
    listed = public_names(tree)
    for position, node in enumerate(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and is_public(node.name, listed):
            if not ast.get_docstring(node):
                missing.append(f"{where}:{node.lineno} {node.name}")
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if (
                        isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and not member.name.startswith("_")
                        and not overload(member)
                        and not ast.get_docstring(member)
                        and not documented_elsewhere(node, member.name, index)
                    ):
                        missing.append(f"{where}:{member.lineno} {node.name}.{member.name}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [target.id for target in targets if isinstance(target, ast.Name)]
            following = tree.body[position + 1] if position + 1 < len(tree.body) else None
            documented = lines[node.lineno - 2].strip().startswith("#:") or (
                isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
            )
            missing += [
                f"{where}:{node.lineno} {name}"
                for name in names
                if name != "__all__" and is_public(name, listed) and not documented
            ]
    return missing


def documented_parameters(docstring: str) -> set[str] | None:
    """The names an ``Args:`` section documents (``None`` without one)."""
    if "\nArgs:\n" not in f"\n{docstring}":
        return None
    section = f"\n{docstring}".split("\nArgs:\n", 1)[1]
    names = set()
    for line in section.splitlines():
        if line and not line.startswith(" "):
            break  # the next section
        match = re.match(r"^    (\*{0,2}\w+):", line)
        if match:
            names.add(match[1].lstrip("*"))
    return names


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
    return {argument.arg for argument in every if argument is not None} - {"self", "cls"}


def incomplete_args(path: Path) -> list[str]:
    """Functions (and classes, for ``__init__``) whose ``Args:`` section leaves out a parameter."""
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        function: ast.FunctionDef | ast.AsyncFunctionDef | None = None
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node
        elif isinstance(node, ast.ClassDef):
            inits = [item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "__init__"]
            function = inits[0] if inits else None
        if function is None:
            continue
        documented = documented_parameters(ast.get_docstring(node) or "")  # type: ignore[arg-type]
        if function is not None and documented is not None and parameters(function) - documented:
            missing.append(f"{path.name}:{node.lineno} {node.name}: {sorted(parameters(function) - documented)}")
    return missing


def test_an_args_section_documents_every_parameter() -> None:
    assert [problem for path in SOURCES for problem in incomplete_args(path)] == []


def test_the_args_check_finds_a_missing_parameter(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('def f(a: int, *, b: int, **rest: int) -> None:\n    """F.\n\n    Args:\n        a: one.\n        **rest: more.\n    """\n')
    assert incomplete_args(module) == ["module.py:1 f: ['b']"]


def test_docstrings_are_markdown() -> None:
    """The reference renders docstrings as Markdown: a reStructuredText ``::`` would show as is (use a fence)."""
    literal = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node) or ""
                if any(line.rstrip().endswith("::") for line in docstring.splitlines()):
                    literal.append(f"{path.name}: {getattr(node, 'name', 'the module')}")
    assert literal == []


def test_the_sources_are_found() -> None:
    assert PACKAGE / "server.py" in SOURCES and len(SOURCES) > 20


def test_every_public_name_has_a_docstring() -> None:
    index = classes()
    missing = [problem for path in SOURCES for problem in undocumented(path, index)]
    assert missing == []


def test_the_check_finds_what_is_undocumented(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('__all__ = ["A", "f", "LIMIT"]\nLIMIT = 3\n\nclass A:\n    def go(self) -> None:\n        pass\n\ndef f() -> None:\n    pass\n')
    found = undocumented(module, classes(), root=tmp_path)
    assert found == ["module.py: the module", "module.py:2 LIMIT", "module.py:4 A", "module.py:5 A.go", "module.py:8 f"]
