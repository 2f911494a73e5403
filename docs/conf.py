"""Sphinx configuration of sanschat's documentation (``python -m sphinx -W -n docs OUT``).

Pages are Markdown (MyST); the API reference is autodoc over the docstrings (Google style,
read by napoleon).  The benchmark chart is drawn from the table in ``benchmarks.md`` by
``_chart.py`` at every build, so the two cannot disagree.

Intersphinx links to Python's and trio's documentation need their ``objects.inv``
inventories.  They are read from ``docs/_inventories/`` when present there, fetched from the
web when ``SANSCHAT_DOCS_ONLINE=1``, and otherwise left out (this project's machines reach
only package registries): references to Python and trio objects are then plain text, and
nitpicky mode checks sanschat's own references only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import _chart  # noqa: E402

import sanschat  # noqa: E402

project = "sanschat"
author = "the sanschat authors"
copyright = "2026, the sanschat authors"
release = sanschat.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_inventories", "README.md"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"sanschat {release}"
html_static_path = ["_static"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
default_role = "py:obj"  # `Channel` in a docstring is a cross-reference
nitpicky = True

_ONLINE = {
    "python": "https://docs.python.org/3",
    "trio": "https://trio.readthedocs.io/en/stable",
}
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
for _name, _url in _ONLINE.items():
    _local = HERE / "_inventories" / f"{_name}.inv"
    if _local.is_file():
        intersphinx_mapping[_name] = (_url, str(_local))
    elif os.environ.get("SANSCHAT_DOCS_ONLINE") == "1":
        intersphinx_mapping[_name] = (_url, None)

# Without an inventory a reference to a Python or trio object cannot resolve: that is not
# a mistake in these docs, so nitpicky mode ignores it.  sanschat's own names are always
# checked.
nitpick_ignore_regex = [(r"py:.*", r"(?!sanschat\b).*")] if not intersphinx_mapping else []


def setup(app: object) -> None:
    """Draw the benchmark chart before the pages are read."""
    _chart.main([str(HERE / "benchmarks.md"), str(HERE / "_static")])
