"""Instructions per request/response round trip, counted by valgrind: noise-free server cost.

Theory of operation: on a shared machine wall-clock rates of the ping-pong benchmark
(``bench_echo.py --mode pingpong``) move by 30 % and more between runs, more than the gaps
they are meant to show.  The number of machine instructions a server executes per round
trip does not: valgrind's callgrind counts them exactly, whatever else the machine runs.
So each contender's server (the same classes ``bench_echo.py`` runs, looked up by key) is
started alone in a child process under ``valgrind --tool=callgrind`` (this script again,
with ``--serve KEY``), and this process drives it with ``bench_echo.run_pingpong``: 50
connections, one 16-byte request in flight each, every reply checked byte for byte.  Each
server runs twice, for ``--short`` and ``--long`` round trips per connection; the
difference of the two totals, divided by the extra round trips, is the cost of one round
trip with start-up, imports and shutdown cancelled out.  It is the server's whole cost in
user space (the interpreter, the C library, the loop, the handler): the kernel's share
(one ``recv`` and one ``send`` per round trip for every contender here, checked with
strace) is not counted, and neither are cache misses or branch mispredictions.  Fewer is
faster; the ratio column is asyncore+asynchat's count over the contender's (above 1: fewer
instructions than asynchat).  Valgrind runs the server 30-50 times slower, so the client
stays far ahead of it and never shapes the count.

With ``--compiled-path DIR`` (a compiled build installed there, as for ``bench_core.py``:
``SANSCHAT_COMPILE=1 pip install --no-deps --target DIR .``) sanschat's servers are counted
once more on that build, as rows of their own; a child that does not load the compiled
build there is an error, not a row.

Needs valgrind (``apt install valgrind``); without it the script says so and exits 2.  It
is not part of CI (about ten minutes).  Run with ``--help``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import bench_echo

#: The contenders counted by default, by their ``bench_echo.py --list`` keys.
DEFAULT_KEYS = ("select", "asyncio", "trio", "asynchat", "asyncio-streams", "trio-per-frame",
                "raw")
CLIENTS = 50


def serve(key: str) -> None:
    """Child side: start *key*'s server, print its port, serve until stdin closes."""
    contenders, _ = bench_echo.all_contenders("pingpong")
    by_key = {c.key: c for c in contenders}
    server = by_key[key].start()
    import sanschat

    print(server.address[1], int(sanschat.COMPILED), flush=True)
    sys.stdin.read()
    server.stop()


class _NoParent:
    """``run_pingpong`` reports to a parent over a pipe; here nobody listens."""

    def send(self, message: object) -> None:
        pass


def count(key: str, round_trips: int, workdir: Path, compiled: str | None = None) -> int:
    """Total instructions of *key*'s server process over *round_trips* per connection,
    on the compiled build found in the directory *compiled* if given."""
    out = workdir / f"callgrind.{key}.{round_trips}.{int(bool(compiled))}"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--serve", key]
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts on every run
    if compiled:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [compiled, env.get("PYTHONPATH")]))
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as child:
        assert child.stdout is not None and child.stdin is not None
        port, _, build = child.stdout.readline().partition(" ")
        if not port.isdigit():
            child.kill()
            raise RuntimeError(f"{key}: the server did not start: {child.stderr.read()}")
        if build.strip() != str(int(bool(compiled))):
            child.kill()
            raise RuntimeError(f"{key}: the server loaded the {'pure' if compiled else 'compiled'}"
                               f" build{f' (not the one in {compiled})' if compiled else ''}")
        bench_echo.run_pingpong(_NoParent(), int(port), CLIENTS, round_trips, 0)  # type: ignore[arg-type]
        child.stdin.close()
        if child.wait(120) != 0:
            raise RuntimeError(f"{key}: the server failed: {child.stderr.read()}")
    text = out.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{key}: no total in {out}")
    return int(found.group(1))


def header(markdown: bool, short: int, long: int, compiled: str | None) -> list[str]:
    import sanschat

    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    facts = [
        f"date: {datetime.date.today().isoformat()}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"python: {platform.python_version()}, sanschat {sanschat.__version__} "
        f"(compiled: {sanschat.COMPILED}"
        f"{f'; the rows marked compiled: the build in {compiled}' if compiled else ''})",
        f"counter: {valgrind.stdout.strip()} callgrind; {CLIENTS} connections, "
        f"({long} - {short}) round trips each",
    ]
    return [f"- {fact}" if markdown else fact for fact in facts]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(DEFAULT_KEYS),
                        help="comma-separated bench_echo.py keys (default: %(default)s)")
    parser.add_argument("--short", type=int, default=100, help="round trips, first run")
    parser.add_argument("--long", type=int, default=500, help="round trips, second run")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--compiled-path", metavar="DIR",
                        help="also count sanschat's servers on the compiled build in DIR")
    parser.add_argument("--serve", metavar="KEY", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind): nothing counted",
              file=sys.stderr)
        return 2
    if not 0 < args.short < args.long:
        parser.error("need 0 < --short < --long")
    contenders, notes = bench_echo.all_contenders("pingpong")
    names = {c.key: c.name for c in contenders}
    keys = [k for k in args.only.split(",") if k]
    unknown = [k for k in keys if k not in names]
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join(names)}")
    runs = [(key, None) for key in keys]
    if args.compiled_path:
        ours = {c.key for c in bench_echo.sanschat_contenders([], batch=False)}
        runs += [(key, args.compiled_path) for key in keys if key in ours]
    per_trip: dict[tuple[str, str | None], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, compiled in runs:
            print(f"counting {key}{' (compiled)' if compiled else ''} ...", file=sys.stderr,
                  flush=True)
            first = count(key, args.short, Path(tmp), compiled)
            second = count(key, args.long, Path(tmp), compiled)
            per_trip[key, compiled] = (second - first) / (CLIENTS * (args.long - args.short))
    base = per_trip.get(("asynchat", None))
    rows: list[tuple[str, str, str]] = []
    for run in runs:
        ratio = "-" if base is None else f"{base / per_trip[run]:.2f}x"
        name = names[run[0]] + (" (compiled)" if run[1] else "")
        rows.append((name, f"{per_trip[run]:,.0f}", ratio))
    lines = [*header(args.markdown, args.short, args.long, args.compiled_path), ""]
    titles = ("server", "instructions / round trip", "vs asyncore+asynchat")
    if args.markdown:
        lines.append("| " + " | ".join(titles) + " |")
        lines.append("|---|---:|---:|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(3)]
        for row in [titles, *rows]:
            lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    lines += [f"note: {note}" for note in notes]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

