"""CI cannot skip silently: every supported Python is found through pyenv's root, whatever
venv is active, a missing one fails the run, and the README's test command is what runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="the CI scripts are bash")


def fake_pyenv(tmp_path: Path, versions: dict[str, int]) -> Path:
    """A pyenv root whose versions/NAME/bin/pythonX.Y exits with the given status."""
    root = tmp_path / "pyenv"
    for name, status in versions.items():
        minor = ".".join(name.split(".")[:2])
        bin_dir = root / "versions" / name / "bin"
        bin_dir.mkdir(parents=True)
        python = bin_dir / f"python{minor}"
        python.write_text(f"#!/bin/sh\nexit {status}\n")
        python.chmod(0o755)
    return root


def environment(pyenv_root: Path, tmp_path: Path) -> dict[str, str]:
    """As inside an active venv: VIRTUAL_ENV, PYENV_VERSION and the venv's python on PATH."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python3").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    return {
        **os.environ,
        "PYENV_ROOT": str(pyenv_root),
        "PYENV_VERSION": "3.11.7",
        "VIRTUAL_ENV": str(tmp_path / "venv"),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def ci_python(minor: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = f"source {ROOT / '.ci' / 'pythons.sh'}; ci_python {minor}"
    assert BASH is not None
    return subprocess.run(
        [BASH, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )


ALL = {"3.10.9": 0, "3.10.13": 0, "3.11.7": 0, "3.12.1": 0, "3.13.0": 0, "3.13.0t": 0}


def test_the_newest_release_build_of_each_version_is_found_inside_a_venv(
    tmp_path: Path,
) -> None:
    root = fake_pyenv(tmp_path, ALL)
    env = environment(root, tmp_path)
    found = {minor: ci_python(minor, env).stdout.strip() for minor in ("3.10", "3.13")}
    assert found == {
        "3.10": f"{root}/versions/3.10.13/bin/python3.10",  # not 3.10.9 (sorted as versions)
        "3.13": f"{root}/versions/3.13.0/bin/python3.13",  # not the free-threaded 3.13.0t
    }


def test_a_missing_version_fails_naming_it(tmp_path: Path) -> None:
    versions = {name: status for name, status in ALL.items() if not name.startswith("3.12")}
    result = ci_python("3.12", environment(fake_pyenv(tmp_path, versions), tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "FAIL: Python 3.12 is not installed" in result.stderr


def test_an_interpreter_of_another_version_fails(tmp_path: Path) -> None:
    result = ci_python("3.11", environment(fake_pyenv(tmp_path, {"3.11.7": 1}), tmp_path))
    assert result.returncode == 1
    assert "is not Python 3.11" in result.stderr


def test_ci_run_fails_before_installing_anything_when_a_python_is_missing(
    tmp_path: Path,
) -> None:
    versions = {name: status for name, status in ALL.items() if not name.startswith("3.13")}
    env = environment(fake_pyenv(tmp_path, versions), tmp_path)
    assert BASH is not None
    result = subprocess.run(
        [BASH, str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "FAIL: Python 3.13 is not installed" in result.stderr
    assert "== tests" not in result.stdout  # nothing ran, nothing was installed


def test_the_readme_test_command_is_the_first_command_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^\$ (python -m pip install -e '\.\[test\]'.*)$", readme, re.M)
    assert match, "the README shows no test command"
    command = match.group(1)
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line for line in run if re.match(r"python -m |[a-z.]*/?bin/python", line)]
    assert commands[0] == command
    assert "activate" in run[run.index(command) - 1]  # inside the venv .ci/run made
