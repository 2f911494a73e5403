"""Build hook: the optional compiled build of sanschat (mypyc), chosen at install time.

Theory of operation: hatchling runs this hook for every wheel it builds.  Unless the
environment variable ``SANSCHAT_COMPILE`` is ``1``, it does nothing, asks for nothing, and
the wheel is the pure-Python package: no compiler, no mypy.  With ``SANSCHAT_COMPILE=1`` it
first asks the build frontend for mypy and setuptools (`dependencies`), then compiles the
modules listed under ``compile`` in ``[tool.hatch.build.targets.wheel.hooks.custom]`` of
``pyproject.toml`` with mypyc (a listed file that does not exist is skipped with a notice, so
the list may name modules before they are written), and adds the extension modules to the
wheel next to the ``.py`` files they shadow.  The ``.py`` files stay in the wheel (tracebacks
and ``inspect`` read them) and the wheel is tagged for this interpreter and platform.

mypyc keeps a compiled function's or method's text signature but drops its docstring, so
before the C files are compiled this hook writes each docstring of the source (classes,
methods, properties and module functions) into the C documentation slot mypyc left for it.
``tests/test_build.py`` checks the result on the compiled build.

An editable install with ``SANSCHAT_COMPILE=1`` is refused: the ``.so`` files would be
imported instead of the ``.py`` files a developer edits afterwards.  Build a compiled copy
with a non-editable install into a venv of its own (see the README, "Compiled build").
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # imported outside a build: tests/test_build.py checks the C rewriting
    BuildHookInterface = object

ENV = "SANSCHAT_COMPILE"
#: What the compiled build needs at build time (a pure build needs neither).
COMPILE_REQUIRES = ["mypy>=1.20", "setuptools>=68"]  # 1.20: acyclic, free_list_len


def compile_requested() -> bool:
    """True if the user asked for the compiled build (``SANSCHAT_COMPILE=1``)."""
    value = os.environ.get(ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV} must be 1 (compiled build) or 0/unset (pure), not {value!r}")
    return value == "1"


class CompiledBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compile the configured modules with mypyc when ``SANSCHAT_COMPILE=1``."""

    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        return list(COMPILE_REQUIRES) if compile_requested() else []

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if not compile_requested():
            return
        if version == "editable":
            raise RuntimeError(
                f"{ENV}=1 with an editable install would leave compiled modules that shadow "
                "later edits of the .py files; install the compiled build non-editable into a "
                "venv of its own: SANSCHAT_COMPILE=1 pip install ."
            )
        sources = self._sources()
        self._tmp = tempfile.mkdtemp(prefix="sanschat-mypyc-")
        for built, target in compile_modules(sources, Path(self.root), Path(self._tmp)):
            build_data["force_include"][str(built)] = target
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def _sources(self) -> list[str]:
        listed = self.config.get("compile", [])
        if not listed or not all(isinstance(path, str) for path in listed):
            raise ValueError("the custom build hook needs a `compile` list of .py paths")
        present = [path for path in listed if (Path(self.root) / path).is_file()]
        for path in sorted(set(listed) - set(present)):
            self.app.display_warning(f"sanschat: {path} is listed under `compile` but absent")
        if not present:
            raise ValueError(f"{ENV}=1 but none of the modules listed under `compile` exist")
        return present


def compile_modules(sources: list[str], root: Path, tmp: Path) -> list[tuple[Path, str]]:
    """Compile *sources* (paths under ``root/src``) with mypyc; return (built file, wheel path)."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    cwd = os.getcwd()
    os.chdir(root)  # mypy reads [tool.mypy] from pyproject.toml and finds src/ from here
    try:
        extensions = mypycify(
            sources, opt_level="3", target_dir=str(tmp / "c"), group_name="sanschat"
        )
        docs: dict[str, str] = {}
        for source in sources:
            docs.update(docstrings(root / source))
        for c_file in (tmp / "c").rglob("*.c"):
            c_file.write_text(with_docstrings(c_file.read_text(), docs))
        dist = Distribution({"name": "sanschat", "ext_modules": extensions})
        build_ext: Any = dist.get_command_obj("build_ext")
        build_ext.build_lib = str(tmp / "lib")
        build_ext.build_temp = str(tmp / "obj")
        build_ext.parallel = os.cpu_count() or 1
        build_ext.ensure_finalized()
        build_ext.run()
    finally:
        os.chdir(cwd)
    lib = tmp / "lib"
    built = sorted(path for path in lib.rglob("*") if path.is_file())
    if not built:
        raise RuntimeError("mypyc produced no extension module")
    return [(path, path.relative_to(lib).as_posix()) for path in built]


# ------------------------------------------------------------------ docstrings into the C


def docstrings(path: Path) -> dict[str, str]:
    """Map the C-table key of each documented name in *path* to its cleaned docstring.

    Keys: ``module.function``, ``module.Class`` (the class), ``module.Class.method`` and
    ``module.Class.property``, where ``module`` is the file's stem (``_channel``), which is
    how mypyc prefixes its C tables.
    """
    tree = ast.parse(path.read_text(), str(path))
    module = path.stem
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                found[f"{module}.{node.name}"] = doc
        elif isinstance(node, ast.ClassDef):
            doc = ast.get_docstring(node)
            if doc:
                found[f"{module}.{node.name}"] = doc
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(item)
                    if doc:
                        found[f"{module}.{node.name}.{item.name}"] = doc
    return found


def c_string(text: str) -> str:
    """*text* as a C string literal (UTF-8; non-ASCII bytes as 3-digit octal escapes)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif 32 <= byte < 127 and char != "?":  # "?" would risk a trigraph
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


_C_STR = r'(?:NULL|"(?:[^"\\]|\\.)*")'
# A table runs from its declaration to the "};" that closes the array (entries never hold one).
_METHOD_TABLE = re.compile(r"static PyMethodDef (\w+?)_methods\[\] = \{(.*?)\n\s*\};", re.S)
_METHOD = re.compile(
    r'(\{"(\w+)",\s*\(PyCFunction\)\w+,\s*[\w| ]+,\s*PyDoc_STR\()(' + _C_STR + r")\)"
)
_GETSET_TABLE = re.compile(r"static PyGetSetDef (\w+?)_getseters\[\] = \{(.*?)\n\s*\};", re.S)
_GETSET = re.compile(
    r'(\{"(\w+)",\s*\(getter\)\w+,\s*(?:NULL|\(setter\)\w+),\s*)NULL(,\s*NULL\})'
)
_TYPE = re.compile(
    r"(static PyTypeObject CPyType_(\w+?)_template_ = \{[^}]*?\.tp_doc = PyDoc_STR\()("
    + _C_STR
    + r")\)"
)


def _with_doc(old: str, doc: str) -> str:
    # Keep mypyc's "signature\n--\n\n" header: it is what inspect.signature() reads.
    try:
        header = ast.literal_eval(old) if old != "NULL" else ""
    except (SyntaxError, ValueError):
        return old  # an escape C and Python read differently: leave it
    if header and not header.endswith("--\n\n"):
        return old  # not a header mypyc wrote: leave it
    return c_string(header + inspect.cleandoc(doc))


def _owner(c_prefix: str) -> str:
    """The ``module.Class`` (or ``module`` for ``<module>module``) that a C table belongs to."""
    if c_prefix.endswith("module"):
        return c_prefix[: -len("module")].rsplit("___", 1)[-1]
    module, _, cls = c_prefix.rpartition("___")
    while module.endswith("_"):  # a private class: "_channel" "___" "_Overflow"
        module, cls = module[:-1], "_" + cls
    return f"{module.rsplit('___', 1)[-1]}.{cls}"


def with_docstrings(c_source: str, docs: dict[str, str]) -> str:
    """Return *c_source* (mypyc output) with the docstrings of *docs* in its doc slots."""

    def methods(table: re.Match[str]) -> str:
        owner = _owner(table.group(1))

        def one(entry: re.Match[str]) -> str:
            doc = docs.get(f"{owner}.{entry.group(2)}")
            if doc is None:
                return entry.group(0)
            return f"{entry.group(1)}{_with_doc(entry.group(3), doc)})"

        return table.group(0).replace(table.group(2), _METHOD.sub(one, table.group(2)), 1)

    def getsets(table: re.Match[str]) -> str:
        owner = _owner(table.group(1))

        def one(entry: re.Match[str]) -> str:
            doc = docs.get(f"{owner}.{entry.group(2)}")
            if doc is None:
                return entry.group(0)
            return f"{entry.group(1)}{c_string(inspect.cleandoc(doc))}{entry.group(3)}"

        return table.group(0).replace(table.group(2), _GETSET.sub(one, table.group(2)), 1)

    def types(match: re.Match[str]) -> str:
        doc = docs.get(_owner(match.group(2)))
        if doc is None:
            return match.group(0)
        return f"{match.group(1)}{_with_doc(match.group(3), doc)})"

    c_source = _METHOD_TABLE.sub(methods, c_source)
    c_source = _GETSET_TABLE.sub(getsets, c_source)
    return _TYPE.sub(types, c_source)


if __name__ == "__main__":  # pragma: no cover - a debugging aid: print what would be patched
    for arg in sys.argv[1:]:
        for key, value in docstrings(Path(arg)).items():
            print(key, "=", value.splitlines()[0])
