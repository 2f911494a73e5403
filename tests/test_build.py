"""The two builds: `sanschat.COMPILED` tells the truth, and the compiled one loses nothing.

These tests run on whichever build is loaded (``.ci/run`` runs the suite on both): the pure
package from the editable install, and the mypyc build (``SANSCHAT_COMPILE=1``, see
``hatch_build.py``) from a venv of its own.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import sanschat
from sanschat import Data, EndOfStream, Event, TerminatorFound
from sanschat._events import make_data, make_datas

ROOT = Path(__file__).resolve().parent.parent


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


def compile_list() -> list[str]:
    """The modules pyproject.toml asks mypyc to compile, as listed there."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest itself depends on tomli before 3.11
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"][
        "compile"
    ]
    return listed


def listed_sources() -> dict[str, Path]:
    """Dotted name -> source file, for the listed modules that exist in the source tree."""
    return {
        ".".join(Path(path).relative_to("src").with_suffix("").parts): ROOT / path
        for path in compile_list()
        if (ROOT / path).is_file()
    }


def listed_modules() -> list[str]:
    """Dotted names of the listed modules that exist in the source tree."""
    return list(listed_sources())


# ------------------------------------------------------------------ which build is loaded


def test_compiled_is_a_bool() -> None:
    assert isinstance(sanschat.COMPILED, bool)


def test_compiled_says_whether_the_listed_modules_are_extension_modules() -> None:
    modules = listed_modules()
    assert "sanschat._events" in modules  # COMPILED is computed there
    for name in modules:
        loader = importlib.import_module(name).__spec__.loader  # type: ignore[union-attr]
        is_extension = isinstance(loader, importlib.machinery.ExtensionFileLoader)
        assert is_extension is sanschat.COMPILED, name


def test_protocol_module_is_never_compiled() -> None:
    # runtime_checkable refuses a class mypyc has compiled: that module must stay pure
    assert "src/sanschat/_protocols.py" not in compile_list()
    assert isinstance(sanschat.IterableProducer([b"x"]), sanschat.Producer)


_WITHOUT_MYPY_EXTENSIONS = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "mypy_extensions":
            raise ImportError("mypy_extensions is not installed here")

sys.meta_path.insert(0, Refuse())
import sanschat

class Echo(sanschat.Chat):
    terminator = b"\\n"
    high_water = 3

    def found_frame(self, frame):
        self.push(frame + b";")

chat = Echo()
chat.feed(b"a\\nb\\n")
print(chat.output_full, bytes(chat.channel.data_to_send()), "mypy_extensions" in sys.modules)
"""


def test_chat_imports_and_subclasses_without_mypy_extensions() -> None:
    # Chat's @mypyc_attr comes from mypy_extensions, which is no dependency: both builds must
    # import without it, and an interpreted subclass must work on either.
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_MYPY_EXTENSIONS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "True b'a;b;' False\n", "")


def test_version_flag_prints_version_and_build() -> None:
    build = "compiled, mypyc" if sanschat.COMPILED else "pure Python"
    result = subprocess.run(
        [sys.executable, "-m", "sanschat", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"sanschat {sanschat.__version__} ({build})\n",
        "",
    )


# ------------------------------------------------------------------ docstrings survive


def _source_docs(source: Path) -> dict[str, str]:
    """``Class`` and ``Class.member`` -> docstring, as written in *source*."""
    tree = ast.parse(source.read_text())
    docs: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            if doc := ast.get_docstring(node):
                docs[node.name] = doc
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (doc := ast.get_docstring(item)):
                    docs[f"{node.name}.{item.name}"] = doc
    return docs


@pytest.mark.parametrize("name", listed_modules())
def test_every_documented_class_and_member_keeps_its_docstring(name: str) -> None:
    module = importlib.import_module(name)
    docs = _source_docs(listed_sources()[name])
    checked = 0
    for key, doc in docs.items():
        owner, _, member = key.partition(".")
        cls = getattr(module, owner, None)
        if cls is None:
            continue
        value = cls if not member else vars(cls).get(member)
        if value is None:  # e.g. a method dataclasses replaced
            continue
        assert inspect.getdoc(value) == inspect.cleandoc(doc), key
        checked += 1
    assert checked or not docs


def test_compiled_methods_keep_their_signature_too() -> None:
    parameters = list(inspect.signature(sanschat.Channel.frames).parameters)
    assert parameters == ["self", "data"]
    assert list(inspect.signature(sanschat.Channel).parameters) == [
        "terminator",
        "max_frame_size",
    ]


# ------------------------------------------------------------------ events, both builds

EVENT_CASES = [(Data, b"x"), (TerminatorFound, b"\r\n"), (TerminatorFound, 3), (EndOfStream, True)]


@pytest.mark.parametrize(("cls", "value"), EVENT_CASES)
def test_events_built_by_their_init_are_frozen_slotted_dataclasses(
    cls: type[Event], value: object
) -> None:
    event = cls(value)  # type: ignore[call-arg]
    field = dataclasses.fields(event)[0].name  # type: ignore[arg-type]
    assert getattr(event, field) == value
    assert cls.__match_args__ == (field,)  # type: ignore[attr-defined]
    assert repr(event) == f"{cls.__name__}({field}={value!r})"
    assert event == cls(value) and hash(event) == hash(cls(value))  # type: ignore[call-arg]
    assert not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, value)


def test_make_data_builds_the_same_data_as_the_constructor() -> None:
    event = make_data(b"frame")
    assert type(event) is Data
    assert event == Data(b"frame") and repr(event) == "Data(data=b'frame')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = b"other"  # type: ignore[misc]


def test_make_datas_builds_one_data_per_part_in_order() -> None:
    parts = [b"a", b"bc", b"def"]
    events = make_datas(parts)
    assert events == [Data(part) for part in parts]
    assert all(type(event) is Data for event in events)
    assert make_datas([]) == []


# ------------------------------------------------------------------ the build hook


def test_the_hook_builds_pure_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, compiled in (("", False), ("0", False), ("1", True)):
        monkeypatch.setenv("SANSCHAT_COMPILE", value)
        assert hook.compile_requested() is compiled
    monkeypatch.delenv("SANSCHAT_COMPILE")
    assert hook.compile_requested() is False
    monkeypatch.setenv("SANSCHAT_COMPILE", "yes")
    with pytest.raises(ValueError, match="SANSCHAT_COMPILE"):
        hook.compile_requested()


C_SAMPLE = r"""
static PyGetSetDef _mod___Thing_getseters[] = {
    {"size",
     (getter)_mod___Thing_get_size,
    NULL, NULL, NULL},
    {NULL}  /* Sentinel */
};

static PyMethodDef _mod___Thing_methods[] = {
    {"run",
     (PyCFunction)CPyPy__mod___Thing___run,
     METH_FASTCALL | METH_KEYWORDS, PyDoc_STR("run($self, n)\n--\n\n")},
    {"other",
     (PyCFunction)CPyPy__mod___Thing___other,
     METH_FASTCALL | METH_KEYWORDS, PyDoc_STR(NULL)},
    {NULL}  /* Sentinel */
};

static PyTypeObject CPyType__mod___Thing_template_ = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "Thing",
    .tp_doc = PyDoc_STR("Thing()\n--\n\n"),
};
static PyMethodDef _modmodule_methods[] = {
    {"helper", (PyCFunction)CPyPy__mod___helper, METH_FASTCALL, PyDoc_STR("helper(x)\n--\n\n")},
    {NULL, NULL, 0, NULL}
};
"""


def _c_literal_text(c_source: str, after: str) -> str:
    """The text of the first C string literal that follows *after* in *c_source*."""
    start = c_source.index(after) + len(after)
    literal = c_source[c_source.index('"', start) :]
    end = 1
    while literal[end] != '"':
        end += 2 if literal[end] == "\\" else 1
    decoded: bytes = ast.literal_eval("b" + literal[: end + 1])
    return decoded.decode()


def test_the_hook_writes_docstrings_into_mypyc_tables_and_keeps_signatures() -> None:
    docs = {
        "_mod.Thing": 'A "thing" \u2013 with\n    an indented second line.',
        "_mod.Thing.run": "Run it.",
        "_mod.Thing.size": "How big.",
        "_mod.helper": "Help?",
    }
    out = hook.with_docstrings(C_SAMPLE, docs)
    assert _c_literal_text(out, ".tp_doc = PyDoc_STR(") == (
        'Thing()\n--\n\nA "thing" \u2013 with\nan indented second line.'
    )
    assert _c_literal_text(out, "CPyPy__mod___Thing___run,") == "run($self, n)\n--\n\nRun it."
    assert _c_literal_text(out, "_mod___Thing_get_size,") == "How big."
    assert _c_literal_text(out, "CPyPy__mod___helper,") == "helper(x)\n--\n\nHelp?"
    assert 'PyDoc_STR(NULL)' in out  # "other" has no docstring: left alone
    assert hook.with_docstrings(C_SAMPLE, {}) == C_SAMPLE
