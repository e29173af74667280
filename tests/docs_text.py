"""Reading the user docs (README.md, docs/*.md) for the tests that hold them to the code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = {"docs/cli.md"}  # written from the code itself (tools/gen_cli_docs.py)
RUN_MARK = "<!-- docs-test: run -->"


def pages(generated: bool = False) -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in found if generated or str(p.relative_to(ROOT)) not in GENERATED]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass(frozen=True)
class Block:
    """A fenced code block: its page, first line number, language, text, and whether it is marked to run."""

    page: Path
    line: int
    lang: str
    text: str
    run: bool

    def __str__(self) -> str:
        return f"{rel(self.page)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if opening:
            start, lang = i + 1, opening.group(2)
            marked = i > 0 and lines[i - 1].strip() == RUN_MARK
            j = start
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            found.append(Block(page, start + 1, lang, "\n".join(lines[start:j]) + "\n", marked))
            i = j + 1
        else:
            i += 1
    return found


def section(page: Path, heading: str) -> str:
    """The text under a heading line (`## Client`), up to the next heading of the same or a higher level."""
    lines = page.read_text().splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"^#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def table_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row in `text` (header and separator rows dropped)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.match(r"^\|\s*-", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    return [r for r in rows if r and r[0] not in ("option", "key", "argument", "code", "figure", "the tutorial")]
