"""Every Python code block in README.md and docs/*.md runs as written.

The blocks of one page run in order in one namespace (a block may use what an
earlier block of the same page defined), in a fresh temporary working
directory, one test per page. A block written as a doctest (``>>>`` lines)
must also print what it shows. Shell commands live in ```bash blocks and
outputs in ```text blocks, which are not run. docs/errors.md is left to
tests/test_errors_catalogue.py, which runs each of its blocks and checks the
error it raises, and README.md to tests/test_readme.py, which runs its blocks
with this runner and checks their results.

Also checked here: every fence names its language, every page of docs/ is in
the site's navigation (mkdocs.yml), and every public name has a reference
entry (docs/reference/*.md).
"""

from __future__ import annotations

import doctest
import io
import re
from pathlib import Path
from typing import NamedTuple

import pytest

import funcnet as fn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Run elsewhere: each block of the errors catalogue is a mistake whose message
# tests/test_errors_catalogue.py checks; tests/test_readme.py runs the README's
# blocks (with this file's runner) and checks what the tour prints and learns.
NOT_RUN = {"errors.md", "README.md"}
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
RUN_PAGES = [page for page in PAGES if page.name not in NOT_RUN]
LANGUAGES = {"python", "bash", "text"}

# An opening fence (possibly indented, inside a list), its body, and the
# closing fence at the same indentation.
_FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


class Block(NamedTuple):
    number: int  # 1-based, among the page's Python blocks
    line: int  # the line of the opening fence
    language: str
    code: str

    @property
    def first_line(self) -> str:
        return next((s.strip() for s in self.code.splitlines() if s.strip()), "")


def fences(page: Path) -> list[Block]:
    text = page.read_text()
    found, python = [], 0
    for match in _FENCE.finditer(text):
        indent = len(match["indent"])
        body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        language = match["lang"].strip()
        python += language == "python"
        found.append(Block(python, text.count("\n", 0, match.start()) + 1, language, body))
    return found


def python_blocks(page: Path) -> list[Block]:
    return [block for block in fences(page) if block.language == "python"]


def run_block(page: Path, block: Block, namespace: dict) -> None:
    """Runs one block in ``namespace``; raises AssertionError naming the page and block."""
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
    where = f"{name} block {block.number} (line {block.line}: {block.first_line!r})"
    if block.code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(
            block.code, namespace, where, str(page), block.line
        )
        report = io.StringIO()
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=report.write, clear_globs=False)
        if runner.failures:
            raise AssertionError(f"{where} failed as a doctest:\n{report.getvalue()}")
        return
    try:
        exec(compile(block.code, f"{page.name}, block {block.number}", "exec"), namespace)
    except Exception as error:
        raise AssertionError(f"{where} raised {type(error).__name__}: {error}") from error


@pytest.mark.parametrize("page", RUN_PAGES, ids=[page.name for page in RUN_PAGES])
def test_every_python_block_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for block in python_blocks(page):
        run_block(page, block, namespace)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_fence_names_its_language(page):
    unnamed = [
        f"line {block.line}: {block.first_line!r}"
        for block in fences(page)
        if block.language not in LANGUAGES
    ]
    assert not unnamed, (
        f"{page.name}: code blocks must be ```python (run by this test), ```bash "
        f"(commands) or ```text (output); these are not: {unnamed}"
    )


def test_a_failing_block_is_reported_by_page_block_and_first_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\ntext\n\n```python\n# second\nx + y\n```\n")
    namespace: dict = {}
    first, second = python_blocks(page)
    run_block(page, first, namespace)
    with pytest.raises(
        AssertionError, match=r"page.md block 2 \(line 7: '# second'\) raised NameError"
    ):
        run_block(page, second, namespace)


def test_a_doctest_block_must_print_what_it_shows(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\n>>> 1 + 1\n3\n```\n")
    with pytest.raises(AssertionError, match="failed as a doctest"):
        run_block(page, python_blocks(page)[0], {})


def test_every_docs_page_is_in_the_site_navigation():
    config = (ROOT / "mkdocs.yml").read_text()
    in_nav = set(re.findall(r"^\s*- [^:\n]+: (\S+\.md)\s*$", config, re.MULTILINE))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - in_nav == set(), "add these pages to mkdocs.yml's nav"
    assert in_nav - pages == set(), "mkdocs.yml's nav lists pages that do not exist"


def test_every_public_name_has_a_reference_entry():
    documented = set()
    for page in (DOCS / "reference").glob("*.md"):
        documented |= set(re.findall(r"^::: funcnet\.(\w+)", page.read_text(), re.MULTILINE))
    missing = sorted(set(fn.__all__) - documented)
    assert not missing, f"add `::: funcnet.NAME` to a page of docs/reference/ for: {missing}"
