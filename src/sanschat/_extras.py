"""The optional dependencies ("extras") and the one message for a missing one.

Theory of operation: sanschat itself depends on nothing; a few of its modules need a package
that an extra installs (``pip install 'sanschat[trio]'``).  Every place that finds such a
package missing words it the same way, through `missing_extra_message`, and raises
`MissingExtraError` (an `ImportError`, so ``except ImportError`` still works) or prints the
message.  `EXTRAS` is the table of which extra brings which package; ``pyproject.toml``'s
``[project.optional-dependencies]`` must agree with it (``tests/test_extras.py`` checks).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

__all__ = ["EXTRAS", "MissingExtraError", "missing", "missing_extra_message", "require"]

#: The user-facing extras and the importable packages each one installs.
EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "trio": ("trio",),
    "testing": ("pytest", "hypothesis"),
}


def _extra_of(package: str) -> str:
    for extra, packages in EXTRAS.items():
        if package in packages:
            return extra
    raise ValueError(f"no sanschat extra installs {package!r}; known: {sorted(EXTRAS)}")


def missing_extra_message(feature: str, package: str) -> str:
    """Return the message for `feature` finding `package` missing, naming the extra to install.

    Args:
        feature: what the user asked for, as they asked for it (``"sanschat.drivers.trio"``,
            ``"serve --driver trio"``).
        package: the importable name of the missing package (``"trio"``).

    Raises:
        ValueError: `package` belongs to no extra in `EXTRAS`.
    """
    extra = _extra_of(package)
    return (
        f"{feature} needs {package}, which is not installed: "
        f"pip install 'sanschat[{extra}]'"
    )


class MissingExtraError(ImportError):
    """A feature of sanschat needs a package that one of its extras installs, and it is missing.

    ``str(error)`` is `missing_extra_message`; ``error.name`` is the missing package and
    ``error.extra`` the extra that installs it.
    """

    def __init__(self, feature: str, package: str) -> None:
        super().__init__(missing_extra_message(feature, package), name=package)
        #: the extra that installs the missing package (``"trio"``, ``"testing"``)
        self.extra: str = _extra_of(package)
        #: what needed it
        self.feature: str = feature


def missing(error: ImportError, package: str, feature: str) -> ImportError:
    """Return the error to raise for `error`, caught while `feature` imported `package`.

    That is a `MissingExtraError` chained to `error` when `error` says `package` itself is
    absent, and `error` unchanged otherwise (an installed package that fails to import is a
    different problem, and its own message says more).  Use it as
    ``except ImportError as error: raise missing(error, "trio", __name__)``.
    """
    _extra_of(package)
    if error.name != package:
        return error
    replacement = MissingExtraError(feature, package)
    replacement.__cause__ = error
    return replacement


def require(package: str, feature: str) -> ModuleType:
    """Import and return `package`, or raise `MissingExtraError` for `feature` (see `missing`).

    Raises:
        MissingExtraError: `package` is not installed (chained to the original error).
        ValueError: `package` belongs to no extra in `EXTRAS`.
    """
    _extra_of(package)
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise missing(error, package, feature)  # noqa: B904 (missing() chains it)
