"""Fail unless the built docs document every public name (run after the Sphinx build).

Usage: ``python docs/_check_api.py docs/_build/html/objects.inv``.  A public name is one in
the ``__all__`` of a public module (the modules of ``docs/api/``); it is documented when
the build's inventory has it under that module (``sanschat.Chat``, not where it is defined).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from sphinx.util.inventory import InventoryFile

HERE = Path(__file__).resolve().parent


def main(inventory_path: str) -> int:
    with open(inventory_path, "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    documented = {name for entries in inventory.values() for name in entries}
    modules = []
    for page in sorted((HERE / "api").glob("*.rst")):
        modules += re.findall(r"^\.\. automodule:: ([\w.]+)$", page.read_text(), re.M)
    missing = []
    count = 0
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            count += 1
            if f"{module_name}.{name}" not in documented:
                missing.append(f"{module_name}.{name}")
    for name in missing:
        print(f"FAIL: not in the API reference: {name}")
    if not missing:
        print(f"ok: the API reference documents all {count} public names of {len(modules)} modules")
    return 1 if missing or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
