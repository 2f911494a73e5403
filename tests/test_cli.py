"""``python -m sanschat``: serve prints one line, answers, and exits 0 on a signal; demo passes.

Servers run as subprocesses over real loopback sockets, on every driver; bad arguments are
checked in-process (`sanschat.__main__.main` exits 2 through argparse) where that is enough.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import sanschat
from sanschat import Chat
from sanschat.__main__ import EXAMPLES, _parser, load_factory, main
from sanschat._extras import missing_extra_message
from sanschat.drivers import DRIVERS

TIMEOUT = 30.0
AVAILABLE = [d for d in DRIVERS if d != "trio" or importlib.util.find_spec("trio")]
#: Subprocesses run the sanschat under test, whatever their current directory.
#: PYTHONFAULTHANDLER: a server that hangs is sent SIGABRT, and then prints every thread's
#: stack on the stderr it shares with the test (`_exit_code`).
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1",
       "PYTHONPATH": os.pathsep.join(
    [str(Path(sanschat.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
LISTENING = re.compile(r"listening on (127\.0\.0\.1|\[::1\]):(\d+)\n")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")

HELPER = '''\
"""A protocol of the user's own, served as tests_helper_module:MyChat."""
from sanschat import Chat


class MyChat(Chat):
    terminator = b"\\n"

    def found_frame(self, line):
        if line == b"boom":
            raise RuntimeError("boom on purpose")
        self.push(b"mine: " + line + b"\\n")


def make_chat():
    return MyChat()


class Nested:
    Inner = MyChat


calls = []


def flaky():
    calls.append(1)
    return MyChat() if len(calls) == 1 else "junk"


NOT_A_FACTORY = 42
INSTANCE = MyChat()


class NotAChat:
    pass


def returns_junk():
    return "junk"


def needs_args(room):
    return MyChat()
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding the user's module, as the current directory of a server."""
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "tests_helper_module.py").write_text(HELPER)
    (directory / "broken_helper.py").write_text("import no_such_dependency_of_broken_helper\n")
    (directory / "mypkg").mkdir()
    (directory / "mypkg" / "__init__.py").write_text("")
    (directory / "mypkg" / "proto.py").write_text("from tests_helper_module import MyChat\n")
    return directory


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run `main` in-process from *project*; sys.path and the imported modules are restored."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield project
    for name in ("tests_helper_module", "broken_helper"):
        sys.modules.pop(name, None)


def _readline(process: subprocess.Popen[str]) -> str:
    """The server's first line of output, waited for with a bound."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(TIMEOUT), "the server printed nothing in time"
    return process.stdout.readline()


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def _serve(spawn: list[subprocess.Popen[str]], *args: str, cwd: Path | None = None,
           stderr: int | None = None, command: list[str] | None = None,
           ) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [*(command or [sys.executable, "-m", "sanschat"]), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=cwd,
        env=ENV,
    )
    spawn.append(process)
    line = _readline(process)
    match = LISTENING.fullmatch(line)
    assert match, f"unexpected first line {line!r}"
    return process, int(match.group(2))


def _exit_code(process: subprocess.Popen[str]) -> int:
    """The server's exit code, once it exits; if it has not in `TIMEOUT` seconds, fail,
    having made it print where each of its threads is stuck (faulthandler, on SIGABRT)."""
    try:
        return process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        process.wait(TIMEOUT)
        pytest.fail(f"the server did not exit in {TIMEOUT} s; its threads' stacks are in "
                    "its stderr (captured above unless the test took it)")


def _stop(process: subprocess.Popen[str]) -> str:
    """SIGINT the server; return what it wrote on stderr (if captured) once it exited 0."""
    process.send_signal(signal.SIGINT)
    assert _exit_code(process) == 0
    return process.stderr.read() if process.stderr else ""


def _ask(host: str, port: int, request: bytes, size: int,
         context: ssl.SSLContext | None = None) -> bytes:
    raw = socket.create_connection((host, port), timeout=TIMEOUT)
    with context.wrap_socket(raw, server_hostname=host) if context else raw as sock:
        sock.sendall(request)
        reply = b""
        while len(reply) < size and (chunk := sock.recv(1024)):
            reply += chunk
        return reply


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run main(argv), which must stop with exit status 2; return the error line."""
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# ---------------------------------------------------------------- the examples


@pytest.mark.parametrize("driver", AVAILABLE)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_echo_answers_and_exits_0_on_a_signal(
    spawn: list[subprocess.Popen[str]], driver: str, signum: int
) -> None:
    process, port = _serve(spawn, "echo", "--driver", driver, "--port", "0")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"hello\r\nwor")
        sock.sendall(b"ld\r\n")
        reply = b""
        while len(reply) < 14:
            reply += sock.recv(1024)
    assert reply == b"hello\r\nworld\r\n"
    process.send_signal(signum)
    assert _exit_code(process) == 0
    assert process.stdout is not None and process.stdout.read() == ""  # exactly one line


def test_serve_enforces_max_frame(spawn: list[subprocess.Popen[str]]) -> None:
    process, port = _serve(spawn, "echo", "--max-frame", "8")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"12345678\r\n")
        assert sock.recv(100) == b"12345678\r\n"
        sock.sendall(b"123456789")
        assert sock.recv(100) == b""  # closed: the frame is over the limit
    _stop(process)


def test_serve_refuses_an_unknown_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert _usage_error(capsys, "serve", "ftp") == (
        "sanschat serve: error: argument TARGET: 'ftp' is neither an example "
        "(echo, chat, http, smtp, resp, memcached) nor MODULE:FACTORY")


def test_serve_reports_a_port_in_use(spawn: list[subprocess.Popen[str]]) -> None:
    _, port = _serve(spawn, "echo")
    result = subprocess.run(
        [sys.executable, "-m", "sanschat", "serve", "echo", "--port", str(port)],
        capture_output=True, text=True, timeout=TIMEOUT, env=ENV,
    )
    assert result.returncode == 1
    assert f"cannot serve echo on select at 127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_the_examples_are_one_registry() -> None:
    assert set(EXAMPLES) >= {"echo", "chat", "http"}
    for name, make in EXAMPLES.items():
        chat = make(100)()
        assert isinstance(chat, Chat) and chat.channel.max_frame_size == 100, name


def test_demo_runs_every_server_on_every_driver_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sanschat", "demo"], capture_output=True, text=True, timeout=120,
        env=ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for driver in AVAILABLE:
        for server in ("echo", "chat", "http"):
            assert any(line.split()[:3] == [driver, server, "ok"] for line in lines), (
                driver, server, result.stdout)
    assert "all servers answered" in lines[-1]


# ---------------------------------------------------------------- MODULE:FACTORY


@pytest.mark.parametrize("driver", AVAILABLE)
@pytest.mark.parametrize("target", ["MyChat", "make_chat", "Nested.Inner"])
def test_serve_a_module_factory_from_the_current_directory(
    spawn: list[subprocess.Popen[str]], project: Path, driver: str, target: str
) -> None:
    process, port = _serve(spawn, f"tests_helper_module:{target}", "--driver", driver,
                           cwd=project)
    assert _ask("127.0.0.1", port, b"one\ntwo\n", 20) == b"mine: one\nmine: two\n"
    _stop(process)


def test_serve_a_module_factory_from_the_console_script(
    spawn: list[subprocess.Popen[str]], project: Path, tmp_path: Path
) -> None:
    """The console script's sys.path starts with its own directory, not the current one."""
    script = _console_script(tmp_path)
    process, port = _serve(spawn, "tests_helper_module:MyChat", cwd=project,
                           command=[sys.executable, str(script)])
    assert _ask("127.0.0.1", port, b"hi\n", 9) == b"mine: hi\n"
    _stop(process)


def _console_script(tmp_path: Path) -> Path:
    """A ``sanschat`` script in a directory of its own, as pip writes console scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "sanschat"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import re
        import sys
        from sanschat.__main__ import main
        if __name__ == "__main__":
            sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
            sys.exit(main())
        """))
    return script


@pytest.mark.parametrize(("target", "error"), [
    ("nosuchmodule_for_sanschat:Thing", "no module named 'nosuchmodule_for_sanschat' "
     "(looked in {cwd} and on sys.path)"),
    ("nosuchmodule_for_sanschat.sub:Thing", "no module named 'nosuchmodule_for_sanschat' "
     "(looked in {cwd} and on sys.path)"),
    ("tests_helper_module:Missing", "'tests_helper_module' has no attribute 'Missing'"),
    ("tests_helper_module:Nested.Missing",
     "'tests_helper_module.Nested' has no attribute 'Missing'"),
    ("tests_helper_module:NOT_A_FACTORY", "tests_helper_module:NOT_A_FACTORY is 42 (of type "
     "int), not a Chat subclass or a zero-argument factory returning a new Chat"),
    ("tests_helper_module:NotAChat", "tests_helper_module:NotAChat is the class NotAChat, "
     "not a subclass of sanschat.Chat"),
    ("tests_helper_module:INSTANCE", "tests_helper_module:INSTANCE is a Chat instance; give "
     "its class or a factory"),
    ("tests_helper_module:needs_args", "tests_helper_module:needs_args cannot be called "
     "without arguments"),
    ("tests_helper_module:returns_junk", "tests_helper_module:returns_junk() returned 'junk' "
     "(of type str), not a sanschat.Chat"),
    ("tests_helper_module:", "'tests_helper_module:' is not MODULE:FACTORY"),
    (":MyChat", "':MyChat' is not MODULE:FACTORY"),
    ("a:b:c", "'a:b:c' is not MODULE:FACTORY"),
    (".relative:MyChat", "'.relative:MyChat' is not MODULE:FACTORY"),
])
def test_serve_says_why_a_target_is_not_a_chat_factory(
    in_project: Path, capsys: pytest.CaptureFixture[str], target: str, error: str
) -> None:
    line = _usage_error(capsys, "serve", target)
    expected = "sanschat serve: error: argument TARGET: " + error.format(cwd=in_project)
    assert line.startswith(expected), line


def test_serve_refuses_max_frame_for_a_chat_of_ones_own(
    in_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(capsys, "serve", "tests_helper_module:MyChat", "--max-frame", "10")
    assert line.endswith("--max-frame applies to the examples only: set max_frame_size on "
                         "the Chat class of tests_helper_module:MyChat")


def test_an_import_error_inside_the_users_module_propagates(in_project: Path) -> None:
    with pytest.raises(ModuleNotFoundError) as raised:  # its traceback shows the import
        main(["serve", "broken_helper:MyChat"])
    assert raised.value.name == "no_such_dependency_of_broken_helper"


def test_load_factory_checks_every_chat_the_factory_makes(in_project: Path) -> None:
    make = load_factory("tests_helper_module:flaky")  # the check at start-up: a Chat
    with pytest.raises(TypeError, match=r"flaky\(\) returned 'junk' \(of type str\)"):
        make()


def test_an_error_inside_the_users_factory_propagates(
    in_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_project / "failing_helper.py").write_text(
        "def make():\n    raise TypeError('a bug in make')\n")
    try:
        with pytest.raises(TypeError, match="a bug in make"):  # with its traceback
            main(["serve", "failing_helper:make"])
    finally:
        sys.modules.pop("failing_helper", None)


def test_load_factory_returns_a_chat_class_itself(in_project: Path) -> None:
    make = load_factory("tests_helper_module:MyChat")
    assert isinstance(make, type) and make.__name__ == "MyChat"
    assert in_project.as_posix() in sys.path or "" in sys.path


# ---------------------------------------------------------------- options checked by argparse


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("port", "error"), [
    ("99999", "a port is 0-65535 (0: any free port), not 99999"),
    ("65536", "a port is 0-65535 (0: any free port), not 65536"),
    ("-1", "a port is 0-65535 (0: any free port), not -1"),
    ("http", "a port is a number 0-65535, not 'http'"),
])
def test_serve_refuses_a_port_out_of_range(
    capsys: pytest.CaptureFixture[str], driver: str, port: str, error: str
) -> None:
    line = _usage_error(capsys, "serve", "echo", "--driver", driver, f"--port={port}")
    assert line == f"sanschat serve: error: argument --port: {error}"


@pytest.mark.parametrize(("option", "value", "error"), [
    ("--backlog", "0", "argument --backlog: must be at least 1, not 0"),
    ("--backlog", "many", "argument --backlog: expected a whole number, not 'many'"),
    ("--max-frame", "0", "argument --max-frame: must be at least 1, not 0"),
    ("--log-level", "loud", "argument --log-level: invalid choice: 'loud'"),
    ("--driver", "twisted", "argument --driver: invalid choice: 'twisted'"),
])
def test_serve_refuses_bad_option_values(
    capsys: pytest.CaptureFixture[str], option: str, value: str, error: str
) -> None:
    line = _usage_error(capsys, "serve", "echo", option, value)
    assert line.startswith(f"sanschat serve: error: {error}"), line


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read a backlog")
@pytest.mark.parametrize("driver", AVAILABLE)
def test_serve_listens_with_the_backlog_given(
    spawn: list[subprocess.Popen[str]], driver: str
) -> None:
    process, port = _serve(spawn, "echo", "--driver", driver, "--backlog", "9")
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=TIMEOUT, check=True).stdout.split()
    assert listing[0] == "LISTEN" and listing[2] == "9", listing  # Send-Q: the backlog
    _stop(process)


def test_every_option_has_help() -> None:
    parser, serve = _parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = [parser, *subparsers[0].choices.values()]
    assert serve in parsers and len(parsers) == 3
    for each in parsers:
        for action in each._actions:
            assert action.help and action.help.strip(), (each.prog, action.dest)
    for choice in subparsers[0]._choices_actions:
        assert choice.help, choice.dest


def test_prog_is_what_the_user_typed(tmp_path: Path) -> None:
    by_module = subprocess.run([sys.executable, "-m", "sanschat", "--help"],
                               capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    assert by_module.stdout.startswith("usage: python -m sanschat ")
    script = _console_script(tmp_path)
    by_script = subprocess.run([sys.executable, str(script), "serve", "--port", "x", "echo"],
                               capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    assert by_script.returncode == 2
    assert by_script.stderr.startswith("usage: sanschat serve ")
    assert "\nsanschat serve: error: argument --port" in by_script.stderr


# ---------------------------------------------------------------- TLS and IPv6


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "::1")
    other = trustme.CA().issue_cert("127.0.0.1")
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
        "both": directory / "both.pem",
        "other_key": directory / "other-key.pem",
        "text": directory / "notes.txt",
        "locked_key": directory / "locked-key.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files["both"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    files["text"].write_text("not a certificate\n")
    from cryptography.hazmat.primitives import serialization  # trustme's own dependency

    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    files["locked_key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    return files


def _client_context(certificates: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates["ca"]))


@pytest.mark.parametrize("driver", AVAILABLE)
@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
def test_serve_a_module_factory_over_tls(
    spawn: list[subprocess.Popen[str]], project: Path, certificates: dict[str, Path],
    driver: str, host: str,
) -> None:
    if host == "::1":  # the issue's own example: a package's module, IPv6, key apart
        target = "mypkg.proto:MyChat"
        tls = ["--certfile", str(certificates["cert"]), "--keyfile", str(certificates["key"])]
    else:
        target = "tests_helper_module:MyChat"
        tls = ["--certfile", str(certificates["both"])]
    process, port = _serve(spawn, target, "--driver", driver, "--host", host, *tls, cwd=project)
    reply = _ask(host, port, b"secret\n", 13, _client_context(certificates))
    assert reply == b"mine: secret\n"
    _stop(process)


@pytest.mark.parametrize("driver", AVAILABLE)
@needs_ipv6
def test_serve_on_ipv6_is_announced_in_brackets(
    spawn: list[subprocess.Popen[str]], driver: str
) -> None:
    process, port = _serve(spawn, "echo", "--driver", driver, "--host", "::1")
    assert _ask("::1", port, b"v6\r\n", 4) == b"v6\r\n"
    _stop(process)


@pytest.mark.parametrize(("files", "error"), [
    (("missing", None), "cannot load the certificate {missing}: [Errno 2] No such file"),
    (("text", None), "cannot load the certificate {text}: "),
    (("cert", "other_key"), "cannot load the certificate {cert} with the key {other_key}: "),
    ((None, "key"), "--keyfile needs --certfile"),
    (("cert", "locked_key"), "the key in {locked_key} is encrypted: give an unencrypted "
     "--keyfile"),
])
def test_serve_refuses_a_certificate_it_cannot_load(
    capsys: pytest.CaptureFixture[str], certificates: dict[str, Path],
    files: tuple[str | None, str | None], error: str,
) -> None:
    paths = {**{k: str(v) for k, v in certificates.items()},
             "missing": str(certificates["ca"].parent / "missing.pem")}
    certfile, keyfile = files
    argv = ["serve", "echo"]
    argv += ["--certfile", paths[certfile]] if certfile else []
    argv += ["--keyfile", paths[keyfile]] if keyfile else []
    line = _usage_error(capsys, *argv)
    assert line.startswith("sanschat serve: error: " + error.format(**paths)), line


# ---------------------------------------------------------------- logging


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) "
                      r"(?P<logger>[a-z_.]+): (?P<message>.*)")


@pytest.mark.parametrize("driver", AVAILABLE)
def test_log_lines_have_time_level_logger_and_name_the_peer(
    spawn: list[subprocess.Popen[str]], project: Path, driver: str
) -> None:
    process, port = _serve(spawn, "tests_helper_module:MyChat", "--driver", driver,
                           "--log-level", "INFO", cwd=project, stderr=subprocess.PIPE)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        peer = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendall(b"boom\n")
        assert sock.recv(100) == b""  # the handler's bug closed the connection
    err = _stop(process)
    records = [m for m in map(LOG_LINE.fullmatch, err.splitlines()) if m]
    assert [(m["level"], m["logger"]) for m in records] == [
        ("INFO", "sanschat.cli"), ("ERROR", f"sanschat.drivers.{driver}")], err
    assert records[0]["message"] == (
        f"serving tests_helper_module:MyChat on the {driver} driver at 127.0.0.1:{port}")
    assert records[1]["message"] == f"error in MyChat for {peer}; closing that connection"
    assert "RuntimeError: boom on purpose" in err  # the traceback follows
    assert "sanschat:" not in err


@pytest.mark.parametrize("level", ["warning", "error"])
def test_log_level_hides_what_is_below_it(
    spawn: list[subprocess.Popen[str]], project: Path, level: str
) -> None:
    process, port = _serve(spawn, "tests_helper_module:MyChat", "--log-level", level,
                           cwd=project, stderr=subprocess.PIPE)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"boom\n")
        assert sock.recv(100) == b""
    err = _stop(process)
    assert "INFO" not in err and " ERROR sanschat.drivers.select: error in MyChat" in err


def test_debug_logs_a_lost_connection_naming_the_peer(
    spawn: list[subprocess.Popen[str]],
) -> None:
    process, port = _serve(spawn, "echo", "--log-level", "debug", stderr=subprocess.PIPE)
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    peer = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.sendall(b"x\r\n")
    assert sock.recv(100) == b"x\r\n"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset
    sock.close()
    assert _ask("127.0.0.1", port, b"after\r\n", 7) == b"after\r\n"  # the reset was handled
    err = _stop(process)
    assert f" DEBUG sanschat.drivers.select: connection with {peer} lost: " in err, err


# ---------------------------------------------------------------- without trio

WITHOUT_TRIO = """\
import sys
sys.modules["trio"] = None  # as if sanschat[trio] were not installed
sys.argv[0] = "sanschat"
from sanschat.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_serve_and_demo_word_the_missing_trio_extra_alike() -> None:
    message = missing_extra_message("the trio driver", "trio")
    assert message == ("the trio driver needs trio, which is not installed: "
                       "pip install 'sanschat[trio]'")
    serve = subprocess.run([sys.executable, "-c", WITHOUT_TRIO, "serve", "echo", "--driver",
                            "trio"], capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    assert serve.returncode == 1
    assert serve.stderr == f"error: cannot serve echo: {message}\n"
    demo = subprocess.run([sys.executable, "-c", WITHOUT_TRIO, "demo"],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"trio     (skipped: {message})" in demo.stdout.splitlines()
