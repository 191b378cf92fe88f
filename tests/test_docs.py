"""Every ```python block of the docs (docs/*.md and README.md) runs here.

The blocks of one page run in order in one namespace (a page may build on its earlier blocks),
each page in a fresh one and with its own event loop, like a script: top-level ``await`` works, and
so does ``asyncio.run(main())``. A FakeCloseServer runs in a background thread, found through
``$CLOSE_API_KEY`` and ``$CLOSE_BASE_URL`` (which the client reads when not given a key or a
base_url). Tracebacks point at the Markdown file's own lines.

A block made only of ``--8<-- "examples/..."`` lines is not run here: pymdownx.snippets puts an
example file there when the site is built, and tests/test_examples.py runs that file.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from close_async.testing import FakeCloseServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
PYTHON = {"python", "py", "python3"}
OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\n]*)$")
SNIPPET = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<path>[^"]+)"\s*$')
BLOCK_TIMEOUT = 30.0


@dataclass(frozen=True)
class Block:
    page: Path
    number: int  # 1-based, among the page's blocks in the same language
    line: int  # the line of the Markdown file where the code starts
    code: str
    language: str = "python"

    @property
    def id(self) -> str:
        return f"{self.page.stem}-{self.number}"

    @property
    def snippets(self) -> list[str]:
        """The files this block includes, if it is made only of ``--8<--`` lines."""
        lines = [line for line in self.code.splitlines() if line.strip()]
        found = [m["path"] for m in map(SNIPPET.match, lines) if m]
        return found if len(found) == len(lines) else []


def code_blocks(page: Path) -> list[Block]:
    """Every fenced block of the page, numbered per language (``python`` for py/python3)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        i += 1
        if opening is None:
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].split()[0].lower() if opening["info"].strip() else ""
        language = "python" if language in PYTHON else language
        start, body = i, []
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and not lines[i].strip().strip(fence[0])
        ):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        number = 1 + sum(block.language == language for block in blocks)
        code = textwrap.dedent("\n".join(body)) + "\n"
        blocks.append(Block(page, number, start + 1, code, language))
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [block for block in code_blocks(page) if block.language == "python"]


BLOCKS = [block for page in PAGES for block in python_blocks(page)]
RUNNABLE = [block for block in BLOCKS if not block.snippets]
# The pages a newcomer copies from first: each of their blocks is a whole script, as pasted.
FRONT_PAGES = [ROOT / "README.md", ROOT / "docs" / "index.md"]
SCRIPTS = [block for block in RUNNABLE if block.page in FRONT_PAGES]


# -- the fake Close, in a thread of its own ------------------------------------------------------


class BackgroundServer:
    """A FakeCloseServer serving from its own thread and loop, so the page's code can use
    blocking calls such as ``asyncio.run`` in the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="docs-fake-close")
        self.server = FakeCloseServer()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def __enter__(self) -> FakeCloseServer:
        self.thread.start()
        self.call(self.server.start())
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def docs_server() -> Iterator[FakeCloseServer]:
    with BackgroundServer() as server:
        yield server


# -- running pages -------------------------------------------------------------------------------


@dataclass
class PageRun:
    """One page's namespace and loop, and how far its blocks have run."""

    page: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__main__"})
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    done: int = 0  # blocks run so far
    failed: int | None = None  # the block that raised, if one did

    def run_through(self, block: Block) -> None:
        """Run the page's blocks up to and including ``block`` (earlier ones first, if a test
        selection skipped them)."""
        for earlier in python_blocks(self.page)[self.done : block.number]:
            if self.failed is not None:
                pytest.fail(f"block {self.failed} of {self.page.name} failed; it runs before this")
            if not earlier.snippets:
                try:
                    self._run(earlier)
                except BaseException:
                    self.failed = earlier.number
                    raise
            self.done = earlier.number

    def _run(self, block: Block) -> None:
        # Padded so that line numbers in tracebacks are the Markdown file's.
        source = "\n" * (block.line - 1) + block.code
        code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, self.namespace)  # a coroutine when the block awaits at top level
        if inspect.iscoroutine(result):
            self.loop.run_until_complete(asyncio.wait_for(result, BLOCK_TIMEOUT))

    def close(self) -> None:
        loop = self.loop
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        assert not pending, f"{self.page.name} left tasks running: {pending}"


@pytest.fixture(scope="module")
def page_runs() -> Iterator[dict[Path, PageRun]]:
    runs: dict[Path, PageRun] = {}
    yield runs
    for run in runs.values():
        run.close()


@pytest.fixture
def docs_env(
    docs_server: FakeCloseServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeCloseServer]:
    """What a reader's script would see: a key, the fake's URL, the repository as the working
    directory (blocks may read the sample files in examples/), and no logging set-up that
    outlives the block."""
    monkeypatch.setenv("CLOSE_API_KEY", "api_docs")
    monkeypatch.setenv("CLOSE_BASE_URL", docs_server.base_url)
    monkeypatch.chdir(ROOT)
    loggers = [logging.getLogger(), *map(logging.getLogger, logging.root.manager.loggerDict)]
    levels = {logger: logger.level for logger in loggers}
    yield docs_server
    for logger, level in levels.items():
        logger.setLevel(level)


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_docs_block_runs(
    block: Block, docs_env: FakeCloseServer, page_runs: dict[Path, PageRun]
) -> None:
    if block.page not in page_runs:
        page_runs[block.page] = PageRun(block.page)
    page_runs[block.page].run_through(block)


@pytest.mark.parametrize("block", SCRIPTS, ids=[block.id for block in SCRIPTS])
def test_front_page_block_runs_as_a_script(
    block: Block, docs_env: FakeCloseServer, tmp_path: Path
) -> None:
    """Saved as a .py file and run by a fresh interpreter, alone: no top-level ``await`` (a
    SyntaxError there), no name from another block."""
    script = tmp_path / f"{block.page.stem}_{block.number}.py"
    script.write_text(block.code, encoding="utf-8")
    before = len(docs_env.created)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=os.environ.copy(),  # $CLOSE_API_KEY and $CLOSE_BASE_URL, set by docs_env
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = f"{block.page.name}:{block.line}"
    assert done.returncode == 0, f"{where} failed as a script:\n{done.stderr}"
    assert len(docs_env.created) > before, f"{where} created nothing on the server"


def test_every_front_page_has_a_script() -> None:
    assert {block.page for block in SCRIPTS} == set(FRONT_PAGES)


# -- what is not run here ------------------------------------------------------------------------


def test_docs_have_python_blocks() -> None:
    """The extraction works (a regression in it would silently test nothing)."""
    pages = {block.page.name for block in RUNNABLE}
    assert {"README.md", "quickstart.md", "creating.md", "errors.md", "bulk.md"} <= pages
    assert len(RUNNABLE) >= 15


@pytest.mark.parametrize(
    "block",
    [block for block in BLOCKS if block.snippets],
    ids=[block.id for block in BLOCKS if block.snippets],
)
def test_docs_snippet_comes_from_a_tested_example(block: Block) -> None:
    for snippet in block.snippets:
        path, _, section = snippet.partition(":")
        assert path.startswith("examples/"), f"{snippet}: only examples/ files are tested"
        file = ROOT / path
        assert file.is_file(), f"{snippet}: no such file"
        if section:
            text = file.read_text(encoding="utf-8")
            for marker in (f"--8<-- [start:{section}]", f"--8<-- [end:{section}]"):
                assert marker in text, f"{snippet}: {path} has no {marker!r}"


def test_every_code_block_names_its_language() -> None:
    """A fence with no language, or one this test does not know, is not run: it must not be
    Python that someone forgot to label (the error tree and transcripts are ``text``)."""
    unknown = [
        f"{block.page.name}:{block.line}: {block.language or 'no language'}"
        for page in PAGES
        for block in code_blocks(page)
        if block.language not in OTHER_LANGUAGES | {"python"}
    ]
    assert not unknown, "code blocks in a language this test does not know:\n" + "\n".join(unknown)


OTHER_LANGUAGES = {"bash", "sh", "shell", "console", "text", "toml", "yaml", "json", "csv"}
