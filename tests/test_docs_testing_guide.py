"""The "aiows_client pytest fixture" section of the testing guide (docs/guides/testing.md), followed in a fresh project (pytester) for each form it shows.

Each project gets the guide's own code and configuration and runs pytest (in process, as pytester
does by default): only what installing aiows and pytest-asyncio gives a user, the plugin loaded from its
entry point and no conftest of ours.
"""

from __future__ import annotations

import re

import pytest

from doc_blocks import DOCS, section

pytest_plugins = ["pytester"]

SECTION = section(DOCS / "guides" / "testing.md", "## The `aiows_client` pytest fixture")
#: The example: the app, an ``aiows_server`` fixture and a test, in one module.
(EXAMPLE,) = re.findall(r"```python\n(.*?)```", SECTION, flags=re.DOTALL)
(PYTEST_INI,) = re.findall(r"```ini\n(.*?)```", SECTION, flags=re.DOTALL)
(PYPROJECT,) = re.findall(r"```toml\n(.*?)```", SECTION, flags=re.DOTALL)
MARKER = "@pytest.mark.asyncio\n"
IMPORTS = EXAMPLE[: EXAMPLE.index("router = Router()")]
#: The app alone, importable as ``myapp`` (the name the guide's configuration uses).
APP = EXAMPLE[: EXAMPLE.index("@pytest.fixture")]
FIXTURE = EXAMPLE[EXAMPLE.index("@pytest.fixture") : EXAMPLE.index(MARKER)]
#: The test alone (from its marker on), for the forms that name the server elsewhere.
TEST = IMPORTS + EXAMPLE[EXAMPLE.index(MARKER) :]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in the project (without pytest-asyncio's warning that no fixture loop scope is chosen)."""
    return pytester.runpytest("-o", "asyncio_default_fixture_loop_scope=function", *args)


def test_the_example_passes_in_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_myapp=EXAMPLE)
    result = run(pytester, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=1)


def test_the_example_passes_with_the_fixture_in_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=APP)
    pytester.makeconftest(IMPORTS + "from myapp import server\n\n" + FIXTURE)
    pytester.makepyfile(test_myapp=TEST)
    result = run(pytester, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=1)


def test_the_example_passes_in_auto_mode_without_the_marker(pytester: pytest.Pytester) -> None:
    assert "asyncio_mode = auto" in SECTION
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makepyfile(test_myapp=EXAMPLE.replace(MARKER, ""))
    result = run(pytester)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("value", ["myapp:server", '"myapp:server"', "'myapp:server'"])
def test_pytest_ini_names_the_server_with_or_without_quotes(pytester: pytest.Pytester, value: str) -> None:
    assert "aiows_server = myapp:server" in PYTEST_INI
    pytester.makepyfile(myapp=APP)
    pytester.makeini(PYTEST_INI.replace("myapp:server", value))
    pytester.makepyfile(test_myapp=TEST)
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_pyproject_names_the_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=APP)
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.makepyfile(test_myapp=TEST)
    result = run(pytester)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("argument", ['"myapp:server"', "server"])
def test_a_marker_names_the_server(pytester: pytest.Pytester, argument: str) -> None:
    assert "@pytest.mark.aiows_server(server)" in SECTION
    pytester.makepyfile(myapp=APP)
    marker = f"@pytest.mark.aiows_server({argument})\n"
    pytester.makepyfile(test_myapp="from myapp import server\n" + TEST.replace(MARKER, MARKER + marker))
    result = run(pytester)
    result.assert_outcomes(passed=1)
