"""Check that every lower bound in pyproject.toml and _build/backend.py is a version CI tests.

A bound of a runtime dependency or an extra's package must equal its pin in .ci/lowest-versions.txt (what the
pure-build run and the oldest Python's suite run install); a bound of a build requirement ([build-system]
requires, the backend's COMPILE_REQUIRES) must equal its pin in .ci/lowest-build-versions.txt (what
.ci/wheels.sh builds the oldest Python's wheel with). No upper bounds are declared: the runs that install the
latest versions test those.

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


def compile_requires() -> list[str]:
    """``COMPILE_REQUIRES`` in _build/backend.py, read without importing it (it imports setuptools)."""
    backend = ast.parse((ROOT / "_build" / "backend.py").read_text())
    for node in ast.walk(backend):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(target, "id", "") == "COMPILE_REQUIRES" for target in targets):
            value = ast.literal_eval(node.value)  # type: ignore[attr-defined]
            assert isinstance(value, list) and value, "COMPILE_REQUIRES is not a literal list"
            return value
    raise SystemExit("_build/backend.py defines no COMPILE_REQUIRES")


def declared() -> dict[str, list[Requirement]]:
    """The requirements checked against each pins file: the build requirements, then the rest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = list(project["build-system"]["requires"]) + compile_requires()
    runtime = list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        runtime += extra
    return {
        "lowest-build-versions.txt": [Requirement(text) for text in build],
        "lowest-versions.txt": [Requirement(text) for text in runtime if not text.startswith("aiows")],
    }


def pins(filename: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in (ROOT / ".ci" / filename).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            result[canonicalize_name(name)] = version.strip()
    return result


def main() -> int:
    problems = []
    summary = []
    for filename, requirements in declared().items():
        pinned = pins(filename)
        bounded = set()
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            for spec in requirement.specifier:
                if spec.operator in ("<", "<=", "~=", "==", "!=", "==="):
                    problems.append(f"{requirement}: only lower bounds (>=) are declared; the latest versions are tested")
                elif spec.operator == ">=":
                    bounded.add(name)
                    if name not in pinned or Version(pinned[name]) != Version(spec.version):
                        problems.append(f"{requirement}: .ci/{filename} pins {name}=={pinned.get(name)}")
        problems += [f"{name}=={version} is pinned in .ci/{filename} but nothing there declares {name}>={version}"
                     for name, version in pinned.items() if name not in bounded]  # fmt: skip
        summary.append(f"{', '.join(f'{name}=={pinned[name]}' for name in sorted(bounded))} (.ci/{filename})")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print("every lower bound is a pinned, tested version:\n  " + "\n  ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
