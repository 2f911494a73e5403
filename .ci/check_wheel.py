"""Check an installed sanschat wheel and its sdist as a user and a packager would see them.

Usage: ``VENV/bin/python .ci/check_wheel.py DIST_DIR``, with the wheel from DIST_DIR
installed in VENV (not editable).  Checks: sanschat is imported from the installed wheel,
its version is the one in the metadata, the metadata has the MIT licence expression, the
licence file, the project URLs and the Python classifiers, and the sdist ships LICENSE.
"""

from __future__ import annotations

import sys
import tarfile
from importlib.metadata import distribution
from pathlib import Path


def main(dist_dir: str) -> int:
    import sanschat

    problems: list[str] = []
    dist = distribution("sanschat")
    meta = dist.metadata
    if "site-packages" not in sanschat.__file__:
        problems.append(f"sanschat imported from {sanschat.__file__}, not from the wheel")
    if meta["Version"] != sanschat.__version__:
        problems.append(f"metadata version {meta['Version']} != {sanschat.__version__}")
    if meta["License-Expression"] != "MIT":
        problems.append(f"License-Expression is {meta['License-Expression']!r}")
    licence = [f for f in dist.files or [] if f.name == "LICENSE"]
    if not licence or "MIT License" not in licence[0].read_text(encoding="utf-8"):
        problems.append("the wheel has no LICENSE with the MIT notice")
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    for label in ("Documentation", "Changelog", "Source"):
        if label not in urls:
            problems.append(f"no {label} project URL")
    classifiers = meta.get_all("Classifier") or []
    for version in ("3.10", "3.11", "3.12", "3.13"):
        if f"Programming Language :: Python :: {version}" not in classifiers:
            problems.append(f"no classifier for Python {version}")
    (sdist,) = Path(dist_dir).glob("sanschat-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[-1] for name in archive.getnames()}
    for required in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"):
        if required not in names:
            problems.append(f"the sdist lacks {required}")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        licence_expression = meta["License-Expression"]
        print(f"ok: sanschat {meta['Version']} wheel: License-Expression {licence_expression}")
        for label, url in urls.items():
            print(f"    {label}: {url}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
