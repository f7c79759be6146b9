"""Check that every lower bound in pyproject.toml and _build/backend.py is a version CI tests.

A bound on mypy_extensions, a build requirement or an extra's package must equal its pin in
.ci/lowest-versions.txt (the versions .ci/wheels.sh and the pure-build run install); websockets, picows,
pydantic and orjson are left to their own minimum-versions run. No upper bounds are declared: the runs
that install the latest versions test those.

    python .ci/check_bounds.py   # exits 1 with the differences
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
#: Checked by the minimum-versions run of the transport work, not here.
CORE = {"websockets", "picows", "pydantic", "orjson"}


def declared() -> list[Requirement]:
    """Every requirement: build-system, the backend's compile requirements, dependencies, extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    texts = list(project["build-system"]["requires"]) + list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        texts += extra
    backend = ast.parse((ROOT / "_build" / "backend.py").read_text())
    for node in ast.walk(backend):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMPILE_REQUIRES":
            texts += ast.literal_eval(node.value)  # type: ignore[arg-type]
    return [Requirement(text) for text in texts if not text.startswith("aiows")]


def pins() -> dict[str, str]:
    result: dict[str, str] = {}
    for line in (ROOT / ".ci" / "lowest-versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            result[canonicalize_name(name)] = version.strip()
    return result


def main() -> int:
    pinned = pins()
    problems = []
    bounded = set()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        for spec in requirement.specifier:
            if spec.operator in ("<", "<=", "~=", "==", "!="):
                problems.append(f"{requirement}: only lower bounds (>=) are declared; the latest versions are tested")
            elif spec.operator == ">=" and name not in CORE:
                bounded.add(name)
                if name not in pinned or Version(pinned[name]) != Version(spec.version):
                    problems.append(f"{requirement}: .ci/lowest-versions.txt pins {name}=={pinned.get(name)}")
    problems += [f"{name}=={version} is pinned but nothing declares {name}>={version}"
                 for name, version in pinned.items() if name not in bounded]  # fmt: skip
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"lower bounds of {', '.join(sorted(bounded))}: the versions .ci/lowest-versions.txt pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
