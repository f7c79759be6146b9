"""The fenced code blocks of the documentation (``README.md`` and ``docs/**/*.md``), as tests/test_docs.py checks them.

A block whose opening fence has the line ``<!-- fragment -->`` right above it is an excerpt of a larger program,
not meant to run on its own: it is parsed, not run or type-checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: Every page whose code blocks are checked: the README and the site's pages.
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
FRAGMENT = "<!-- fragment -->"

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<language>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its code (dedented as a fence inside a list is)."""

    page: Path
    line: int
    language: str
    code: str
    fragment: bool

    @property
    def name(self) -> str:
        """``docs/guides/routing.md:14``: the page (from the repository's root) and the fence's line."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def module(self) -> str:
        """A module name for the block, unique in the documentation: ``docs_guides_routing_14``."""
        stem = str(self.page.relative_to(ROOT).with_suffix("")).replace("/", "_").replace("-", "_").lower()
        return f"{stem}_{self.line}"


def blocks(page: Path) -> list[Block]:
    """The code blocks of one page, in order."""
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        above = text[: match.start()].rstrip("\n").rpartition("\n")[2].strip()
        indent = len(match["indent"])
        code = "".join(row[indent:] for row in match["body"].splitlines(keepends=True))
        found.append(Block(page, line, match["language"], code, above == FRAGMENT))
    return found


def all_blocks(language: str | None = None) -> list[Block]:
    """Every page's code blocks, or those in ``language``."""
    return [block for page in PAGES for block in blocks(page) if language is None or block.language == language]


def section(page: Path, heading: str) -> str:
    """The text of ``page`` from the line ``heading`` (``## Title``) to the next heading of its level or above."""
    level = len(heading.split(" ")[0])
    lines = page.read_text().splitlines(keepends=True)
    start = lines.index(heading + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].lstrip().startswith("```")
        marks = lines[end].split(" ")[0]
        if not fenced and marks and set(marks) == {"#"} and len(marks) <= level:
            return "".join(lines[start:end])
    return "".join(lines[start:])
