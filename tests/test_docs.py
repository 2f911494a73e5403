"""The documentation's Python examples run, page by page, and its API reference covers every
public name (the docs build itself, with warnings as errors, runs in .ci/run)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PUBLIC_MODULES = [
    "sanschat",
    "sanschat.drivers",
    "sanschat.drivers.select",
    "sanschat.drivers.asyncio",
    "sanschat.drivers.trio",
    "sanschat.testing",
    "sanschat.testing.strategies",
    "sanschat.fuzz",
    "sanschat.examples",
    "sanschat.compat.asynchat",
    "sanschat.compat.asyncore",
]


# page: (skip if true, why)
SKIP = {
    "howto/tls.md": (
        sys.version_info < (3, 11) or importlib.util.find_spec("trustme") is None,
        "needs trustme; asyncio's SSL transport on 3.10 reports an error from __del__",
    ),
}


def test_the_docs_have_python_examples() -> None:
    assert sum(len(BLOCK.findall(page.read_text(encoding="utf-8"))) for page in PAGES) >= 8


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_the_examples_of_a_page_run_in_order(page: Path) -> None:
    skip, why = SKIP.get(page.relative_to(DOCS).as_posix(), (False, ""))
    if skip:
        pytest.skip(why)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for index, block in enumerate(BLOCK.findall(page.read_text(encoding="utf-8"))):
        exec(compile(block, f"{page.relative_to(DOCS)} example {index + 1}", "exec"), namespace)


def test_the_api_reference_documents_every_public_module() -> None:
    documented = set()
    for page in (DOCS / "api").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: ([\w.]+)$", page.read_text(), re.M))
    assert documented == {*PUBLIC_MODULES, "sanschat.testing.pytest_plugin"}
    for name in PUBLIC_MODULES:
        assert importlib.import_module(name).__all__, name  # autodoc documents __all__


def test_the_committed_charts_are_drawn_from_the_benchmark_tables(tmp_path: Path) -> None:
    import runpy

    chart = runpy.run_path(str(DOCS / "_chart.py"))
    assert chart["main"]([str(DOCS / "benchmarks.md"), str(tmp_path)]) == 0
    drawn = sorted(p.name for p in tmp_path.iterdir())
    assert drawn == ["echo-bulk.svg", "echo-pingpong.svg"]
    for name in drawn:
        assert (tmp_path / name).read_text() == (DOCS / "_static" / name).read_text(), name


def test_a_chart_bar_is_as_long_as_its_figure(tmp_path: Path) -> None:
    import runpy

    chart = runpy.run_path(str(DOCS / "_chart.py"))
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- chart: c.svg | T | units | a, b -->\n| name | a | b |\n|---|---|---|\n"
        "| one | **4** (x) | 1 |\n| two | 2 | |\n"
    )
    chart["main"]([str(page), str(tmp_path)])
    widths = [float(w) for w in re.findall(r'<rect x="290" y="[\d.]+" width="([\d.]+)"', (
        tmp_path / "c.svg").read_text())]
    assert widths == [420.0, 105.0, 210.0]  # 4 is the longest; 1 and 2 in proportion; no bar
