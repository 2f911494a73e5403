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
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import _chart  # noqa: E402
from sphinx.application import Sphinx  # noqa: E402

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

html_theme = "furo"
html_title = f"sanschat {release}"
html_static_path = ["_static"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
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

# Nitpicky mode checks every reference written in full, ``sanschat.X``: one that names no
# documented object fails the build.  A short name (`Chat` in a driver's docstring) or a
# Python or trio name resolves where it can (intersphinx, when its inventory is there) and is
# plain text otherwise, so it is not checked: without network the inventories are missing,
# and the docstrings name sanschat's objects briefly, as their readers know them.
nitpick_ignore_regex = [(r"py:.*", r"(?!sanschat\b).*")]


_PRIVATE_DEFAULT = re.compile(r"(?:sanschat\._channel\.)?_Default \| ")


def _public_signature(
    app: Sphinx, what: str, name: str, obj: object, options: object,
    signature: str | None, return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """Drop the private sentinel's type from a signature autodoc read off an implementation.

    ``set_terminator`` is public as two overloads (with or without ``max_frame_size``);
    where autodoc cannot see them (a method inherited from a private base class) it shows
    the implementation, whose ``_Default`` stands for "argument not given".
    """
    if signature is not None:
        signature = _PRIVATE_DEFAULT.sub("", signature)
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    """Draw the benchmark charts before the pages are read; hide the private sentinel."""
    app.connect("autodoc-process-signature", _public_signature)
    _chart.main([str(HERE / "benchmarks.md"), str(HERE / "_static")])
