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

With ``--core`` it counts the core instead, with no sockets: the read shapes of
``bench_core.py`` where the per-call cost decides (one 16-byte line per read, 1-byte reads,
16-byte lines in 64 KiB reads), each through the contenders of ``bench_core.py`` (its own
functions: sanschat ``frames()``, the event API, ``Chat.feed``, asynchat, Twisted
``LineOnlyReceiver``), as instructions per read or per frame; and its terminator switch per
frame (RESP bulk strings in 64 KiB reads, ``Chat`` against asynchat only), per value.  Each
contender runs alone in a child under callgrind over the first *n* and then the first *2n*
reads of one input built for *2n* in both children, so that building the input, the imports
and the start-up cancel out exactly; the children run in parallel (counts do not depend on
the load).

Needs valgrind (``apt install valgrind``); without it the script says so and exits 2.  It
is not part of CI (about ten minutes; ``--core`` about seven).  Run with ``--help``.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


#: --core's read shapes: key -> (title, unit counted, read size, reads counted first *n*).
#: Bulk reads are counted per frame (65535-byte reads, so that every cut falls inside a line,
#: as in ``bench_core.py``), the others per read.
CORE_SHAPES: dict[str, tuple[str, str, int, int]] = {
    "one-line": ("one 16-byte line per read", "read", 16, 5000),
    "one-byte": ("16-byte lines in 1-byte reads", "read", 1, 8000),
    "bulk": ("16-byte lines in 64 KiB reads", "frame", 65535, 4),
    "switch": ("RESP bulk strings, a terminator switch per frame, in 64 KiB reads", "value",
               65536, 4),
}
#: The shapes whose input is not 16-byte lines: shape -> {contender: (its name there, its
#: bench_core function)}.  Only these contenders run them (the others have no such protocol).
CORE_OWN_INPUT: dict[str, dict[str, tuple[str, str]]] = {
    "switch": {"chat": ("sanschat Chat.found_frame + set_terminator", "chat_switching"),
               "asynchat": ("asynchat", "asynchat_switching")},
}
#: --core's contenders: key -> (name, bench_core function name, sanschat's).
CORE_CONTENDERS: dict[str, tuple[str, str, bool]] = {
    "frames": ("sanschat frames()", "sanschat_frames", True),
    "events": ("sanschat receive() events", "sanschat_events", True),
    "events-type": ("sanschat receive() events, type() is", "sanschat_events_type", True),
    "chat": ("sanschat Chat.feed, found_frame", "chat_frames", True),
    "asynchat": ("asynchat", "asynchat_lines", False),
    "twisted": ("Twisted LineOnlyReceiver", "twisted_line_only", False),
}
DEFAULT_CORE_KEYS = ("frames", "events", "chat", "asynchat", "twisted")


def bench_core_module() -> Any:
    """``bench_core`` (imported late: it imports Twisted and anyio, which the ping-pong
    children need not)."""
    import bench_core

    return bench_core


def core_input_lines(shape: str) -> int:
    """How many 16-byte lines (or RESP values, 29 bytes) both children of *shape* build:
    enough for *2n* full reads."""
    size, first = CORE_SHAPES[shape][2:]
    return 2 * first * size // (29 if shape in CORE_OWN_INPUT else 16) + 1


def core_run(shape: str, key: str, count: int) -> None:
    """Child side of --core: run *key* over the first *count* reads of *shape*'s input
    (`core_input_lines`, the same in both children), check the frames it found, and print
    the build loaded and that count of frames."""
    bench_core = bench_core_module()
    size = CORE_SHAPES[shape][2]
    if shape in CORE_OWN_INPUT:
        data = bench_core.resp_values(core_input_lines(shape))
        function = getattr(bench_core, CORE_OWN_INPUT[shape][key][1])
        lines = data[: count * size].count(b"\r\n") // 2  # the values complete in them
    else:
        data = bench_core.short_lines(core_input_lines(shape))
        function = getattr(bench_core, CORE_CONTENDERS[key][1])
        lines = count * size // 16  # (every read is *size* bytes long: the input is longer)
    reads = bench_core.cut(data, size)[:count]
    assert len(reads) == count and len(reads[-1]) == size
    found = function(reads)[0]
    if found != lines:
        raise SystemExit(f"{key} on {shape}: {found} frames, expected {lines}")
    import sanschat

    print(int(sanschat.COMPILED), lines, flush=True)


def core_count(shape: str, key: str, count: int, workdir: Path,
               compiled: str | None) -> tuple[int, int]:
    """Total instructions of one --core child (see `core_run`), and the frames it found."""
    out = workdir / f"callgrind.{shape}.{key}.{count}.{int(bool(compiled))}"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--core-run", shape, key, str(count)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if compiled:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [compiled, env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800,
                          check=False)
    build, _, frames = done.stdout.strip().partition(" ")
    if done.returncode != 0 or build != str(int(bool(compiled))) or not frames.isdigit():
        raise RuntimeError(f"{key} on {shape}: the child failed or loaded the wrong build: "
                           f"{done.stdout.strip()!r} {done.stderr[-2000:]}")
    text = out.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{key} on {shape}: no total in {out}")
    return int(found.group(1)), int(frames)


def core_main(keys: list[str], shapes: list[str], markdown: bool, compiled: str | None) -> int:
    """--core: count every (shape, contender, build) and print one table per shape."""
    runs = [(shape, key, None) for shape in shapes for key in keys
            if key in CORE_OWN_INPUT.get(shape, CORE_CONTENDERS)]
    if compiled:
        runs += [(shape, key, compiled) for shape, key, _ in list(runs)
                 if CORE_CONTENDERS[key][2]]
    jobs = [(run, count) for run in runs
            for count in (CORE_SHAPES[run[0]][3], 2 * CORE_SHAPES[run[0]][3])]

    def one(job: tuple[tuple[str, str, str | None], int]) -> tuple[int, int]:
        (shape, key, build), count = job
        return core_count(shape, key, count, Path(tmp), build)

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        print(f"counting {len(jobs)} children, {os.cpu_count()} at a time ...",
              file=sys.stderr, flush=True)
        counted = list(pool.map(one, jobs))
    per_unit = {}
    for i, run in enumerate(runs):
        (first, first_frames), (second, second_frames) = counted[2 * i], counted[2 * i + 1]
        units = (CORE_SHAPES[run[0]][3] if CORE_SHAPES[run[0]][1] == "read"
                 else second_frames - first_frames)
        per_unit[run] = (second - first) / units
    lines = [*header(markdown, 0, 0, compiled, core=True), ""]
    for shape in shapes:
        title, unit, _, first = CORE_SHAPES[shape]
        base = per_unit.get((shape, "asynchat", None))
        twisted = per_unit.get((shape, "twisted", None))
        rows = []
        for run in (r for r in runs if r[0] == shape):
            name = CORE_OWN_INPUT.get(shape, CORE_CONTENDERS)[run[1]][0]
            name += ", compiled" if run[2] else ""
            rows.append((name, f"{per_unit[run]:,.0f}",
                         "-" if base is None else f"{base / per_unit[run]:.2f}x",
                         "-" if twisted is None else f"{twisted / per_unit[run]:.2f}x"))
        titles = ("contender", f"instructions / {unit}", "asynchat's over it",
                  "Twisted's over it")
        lines.append(f"{'### ' if markdown else ''}{title} ({first:,} then {2 * first:,} "
                     f"reads; counted per {unit})")
        lines += ["", *table(titles, rows, markdown), ""]
    print("\n".join(lines))
    return 0


def table(titles: Sequence[str], rows: list[tuple[str, ...]], markdown: bool) -> list[str]:
    """*rows* under *titles*, as markdown or aligned text (numbers right-aligned)."""
    if markdown:
        return ["| " + " | ".join(titles) + " |", "|---|" + "---:|" * (len(titles) - 1),
                *("| " + " | ".join(row) + " |" for row in rows)]
    widths = [max(len(r[i]) for r in [tuple(titles), *rows]) for i in range(len(titles))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in [tuple(titles), *rows]]


def header(markdown: bool, short: int, long: int, compiled: str | None,
           core: bool = False) -> list[str]:
    import sanschat

    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    facts = [
        f"date: {datetime.date.today().isoformat()}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"python: {platform.python_version()}, sanschat {sanschat.__version__} "
        f"(compiled: {sanschat.COMPILED}"
        f"{f'; the rows marked compiled: the build in {compiled}' if compiled else ''})",
        f"counter: {valgrind.stdout.strip()} callgrind; "
        + ("the core alone, no sockets: (2n - n) reads over n" if core else
           f"{CLIENTS} connections, ({long} - {short}) round trips each"),
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
    parser.add_argument("--core", action="store_true",
                        help="count the core's read shapes instead (no sockets); --only then "
                        f"takes {', '.join(CORE_CONTENDERS)} "
                        f"(default: {','.join(DEFAULT_CORE_KEYS)})")
    parser.add_argument("--shapes", default=",".join(CORE_SHAPES),
                        help="with --core: comma-separated read shapes (default: %(default)s)")
    parser.add_argument("--serve", metavar="KEY", help=argparse.SUPPRESS)
    parser.add_argument("--core-run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.core_run:
        shape, key, reads = args.core_run
        core_run(shape, key, int(reads))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind): nothing counted",
              file=sys.stderr)
        return 2
    if args.core:
        only = args.only if args.only != ",".join(DEFAULT_KEYS) else ",".join(DEFAULT_CORE_KEYS)
        keys = [k for k in only.split(",") if k]
        shapes = [k for k in args.shapes.split(",") if k]
        unknown = [k for k in keys if k not in CORE_CONTENDERS]
        unknown += [k for k in shapes if k not in CORE_SHAPES]
        if unknown:
            parser.error(f"unknown contender(s) or shape(s) {', '.join(unknown)}; known: "
                         f"{', '.join(CORE_CONTENDERS)}; {', '.join(CORE_SHAPES)}")
        return core_main(keys, shapes, args.markdown, args.compiled_path)
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
    lines += table(titles, rows, args.markdown)
    lines += [f"note: {note}" for note in notes]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

