"""A missing extra is reported once, the same way, naming the extra to install."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import sanschat
from sanschat._extras import EXTRAS, MissingExtraError, missing, missing_extra_message, require

ROOT = Path(__file__).resolve().parent.parent


def run_without(package: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where importing `package` fails as if not installed."""
    prelude = f"import sys; sys.modules[{package!r}] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60
    )


def test_the_message_names_the_feature_the_package_and_the_extra() -> None:
    message = missing_extra_message("serve --driver trio", "trio")
    assert message == (
        "serve --driver trio needs trio, which is not installed: pip install 'sanschat[trio]'"
    )
    assert "pip install 'sanschat[testing]'" in missing_extra_message("x", "hypothesis")


def test_a_package_of_no_extra_is_refused() -> None:
    with pytest.raises(ValueError, match="'uvloop'"):
        missing_extra_message("x", "uvloop")


def test_missing_replaces_only_the_error_of_the_package_itself() -> None:
    absent = ModuleNotFoundError("No module named 'trio'", name="trio")
    error = missing(absent, "trio", "sanschat.drivers.trio")
    assert isinstance(error, MissingExtraError)
    assert error.extra == "trio" and error.name == "trio"
    assert error.__cause__ is absent
    broken = ImportError("cannot import name 'x' from 'outcome'", name="outcome")
    assert missing(broken, "trio", "sanschat.drivers.trio") is broken


def test_require_imports_an_installed_package() -> None:
    assert require("pytest", "the test") is pytest


def test_require_names_the_extra_of_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(MissingExtraError, match=r"sanschat\[testing\]") as info:
        require("hypothesis", "my feature")
    assert str(info.value).startswith("my feature needs hypothesis")


def test_importing_the_trio_driver_without_trio_names_the_extra() -> None:
    result = run_without(
        "trio",
        "from sanschat._extras import MissingExtraError\n"
        "try:\n    import sanschat.drivers.trio\n"
        "except MissingExtraError as e:\n    print(e)\n"
        "else:\n    raise SystemExit('imported')\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == missing_extra_message("sanschat.drivers.trio", "trio")


def test_importing_the_strategies_without_hypothesis_names_the_extra() -> None:
    result = run_without("hypothesis", "import sanschat.testing.strategies\n")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    expected = missing_extra_message("sanschat.testing.strategies", "hypothesis")
    assert last == f"sanschat._extras.MissingExtraError: {expected}"


def test_the_fuzzer_without_hypothesis_names_the_extra_and_exits_2() -> None:
    result = run_without(
        "hypothesis",
        "from sanschat.fuzz import main\n"
        "sys.exit(main(['--engine', 'hypothesis', '--runs', '1', '--seconds', '1']))\n",
    )
    assert result.returncode == 2, result.stderr
    expected = missing_extra_message("python -m sanschat.fuzz", "hypothesis")
    assert result.stdout.strip().splitlines()[-1] == f"error: {expected}"


def test_the_extras_table_agrees_with_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    for extra, packages in EXTRAS.items():
        declared = {req.split(">")[0].split("=")[0].split(";")[0].strip() for req in extras[extra]}
        assert declared == set(packages), extra


def test_the_version_has_one_source() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    init = (ROOT / "src" / "sanschat" / "__init__.py").read_text(encoding="utf-8")
    assert f'__version__ = "{sanschat.__version__}"' in init


def test_every_extra_the_texts_mention_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = set(project["optional-dependencies"])
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]
    mentioned: set[str] = set()
    for path in texts:
        if "_build" in path.parts:
            continue
        for group in re.findall(r"(?:sanschat|\.)\[([\w,-]+)\]", path.read_text(encoding="utf-8")):
            mentioned.update(group.split(","))
    assert {"trio", "testing", "test"} <= mentioned
    assert mentioned <= declared
