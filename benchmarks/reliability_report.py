"""Print sanschat's reliability figures for every driver as a markdown table.

Theory of operation: runs every scenario of ``reliability.py`` (next to this file; the test
suite ``tests/reliability`` runs the same code) on each driver at the chosen scale, then
prints one table: rows are the figures, columns the drivers, with a header line naming the
date, Python and the machine; then one row per scenario, and every problem seen.  Progress
goes to stderr.  Exit status 1 if any scenario failed, so the table is never quoted as
clean by mistake.

    python3 benchmarks/reliability_report.py --scale full     # the figures of docs/benchmarks.md
    python3 benchmarks/reliability_report.py --scale small    # about what CI runs
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Sequence

import reliability
from reliability import MiB, Outcome, Scale

import sanschat
from sanschat.drivers import DRIVERS


def _header(scale: Scale) -> str:
    uname = platform.uname()
    return (
        f"sanschat {getattr(sanschat, '__version__', '')} reliability, scale `{scale.name}` "
        f"({scale.connections} connections x {scale.frames * scale.rounds} frames, "
        f"{scale.producer_bytes // MiB} MiB producer), "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{uname.system} {uname.release} {uname.machine}, {os.cpu_count()} CPUs"
    )


def _mib(value: float) -> str:
    return f"{value / MiB:.0f} MiB"


def _count(outcomes: list[Outcome]) -> str:
    return f"{sum(o.ok for o in outcomes)}/{len(outcomes)}"


def _column(results: dict[str, Outcome]) -> list[str]:
    """The main table's cells for one driver, in the order of `ROWS`."""
    load, producer = results["load"], results["non-reading-peer"]
    lf, pf = load.figures, producer.figures
    faults = [results[s.slug] for s in reliability.FAULTS]
    bad = [results[s.slug] for s in reliability.BAD_INPUTS]
    silent = sum(o.silent for o in results.values())
    unfinished = sum(1 for o in results.values() if not o.ok and not o.sent)
    return [
        f"{lf['held']:.0f} / {lf['connections']:.0f}" if lf else "FAILED",
        f"{lf['frames_per_s'] / 1000:.0f} k" if lf else "FAILED",
        (f"{_mib(lf['peak_rss'])} (idle {_mib(lf['idle_rss'])}, "
         f"{lf['connections']:.0f} open {_mib(lf['held_rss'])})") if lf else "FAILED",
        (f"{_mib(pf['peak_rss'])} (idle {_mib(pf['idle_rss'])}; "
         f"{pf['pulled_at_stall'] / MiB:.1f} MiB pulled while stalled)") if pf else "FAILED",
        _count(faults),
        _count(bad),
        f"{silent}" + (f" ({unfinished} scenarios unfinished)" if unfinished else ""),
    ]


ROWS = [
    "connections held at once (every frame echoed)",
    "frames/s under load",
    "server peak RSS under load",
    "server peak RSS, non-reading peer + producer",
    "faults survived",
    "bad inputs refused or handled as documented",
    "bytes lost silently",
]


FANOUT_ROWS = [
    ("fanout-silent", "silent members + 2 full-speed senders: server RSS growth, slowest "
                      "fresh client, members dropped"),
    ("fanout-fast", "members reading as fast as they can, 4 senders: dropped, MiB/s relayed"),
    ("stall-write", "256 KiB write of 1-byte lines to the room: slowest other client"),
    ("thread-close-race", "thread close race: rounds, lines lost, late pushes dropped"),
]


def _fanout_cell(results: dict[str, Outcome], slug: str) -> str:
    """One driver's figure for a fan-out scenario (see `FANOUT_ROWS`)."""
    f = results[slug].figures
    if not f:
        return "FAILED"
    mark = "" if results[slug].ok else " **FAIL**"
    if slug == "fanout-silent":
        return (f"{f['members']:.0f} members: +{_mib(f['rss_growth'])} "
                f"(peak {_mib(f['peak_rss'])}), {f['max_delay'] * 1000:.0f} ms over "
                f"{f['probes']:.0f} fresh clients, {f['dropped']:.0f} dropped{mark}")
    if slug == "fanout-fast":
        return (f"{f['members']:.0f} members: {f['dropped']:.0f} dropped, "
                f"{f['rate'] / MiB:.0f} MiB/s{mark}")
    if slug == "stall-write":
        return (f"{f['members']:.0f} members: {f['max_delay'] * 1000:.0f} ms "
                f"(before: {f['delay_before'] * 1000:.0f} ms), {f['seconds']:.1f} s to relay"
                f"{mark}")
    return f"{f['rounds']:.0f} rounds: {f['lost']:.0f} lost, {f['late']:.0f} dropped late{mark}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(reliability.SCALES), default="full")
    parser.add_argument("--drivers", default=",".join(DRIVERS),
                        help="comma-separated drivers (default: all)")
    parser.add_argument("--only", default="",
                        help="comma-separated scenario slugs (default: all; the main table "
                        "needs them all)")
    args = parser.parse_args(argv)
    scale = reliability.SCALES[args.scale]
    drivers = [d for d in args.drivers.split(",")
               if d != "trio" or importlib.util.find_spec("trio") is not None]
    only = set(filter(None, args.only.split(",")))
    scenarios = [s for s in reliability.SCENARIOS if not only or s.slug in only]
    results: dict[str, dict[str, Outcome]] = {}
    started = time.monotonic()
    for driver in drivers:
        results[driver] = {}
        for scenario in scenarios:
            began = time.monotonic()
            outcome = reliability.run_scenario(scenario, driver, scale)
            results[driver][scenario.slug] = outcome
            print(f"{driver:8} {scenario.slug:24} {'ok  ' if outcome.ok else 'FAIL'} "
                  f"{time.monotonic() - began:5.1f} s", file=sys.stderr, flush=True)
    print(_header(scale) + "\n")
    if not only:
        columns = [_column(results[d]) for d in drivers]
        print(_table(["figure", *drivers], [[row, *(c[i] for c in columns)]
                                            for i, row in enumerate(ROWS)]))
    fanout = [s.slug for s in reliability.FANOUT if s in scenarios]
    if fanout:
        print("\n" + _table(["fan-out and fair rounds", *drivers],
                            [[row, *(_fanout_cell(results[d], slug) for d in drivers)]
                             for slug, row in FANOUT_ROWS if slug in fanout]))
    print(f"\nLoad: {scale.connections} clients in one non-blocking `selectors` loop of this "
          "process, against `python -m sanschat serve echo` in its own process; each sends "
          f"{scale.frames} random frames (0 B to 16 KiB, most under 64 B) {scale.rounds} times, "
          "cut at random points (1 B to 8 KiB writes, 32 KiB in flight), and checks every byte "
          "echoed.  RSS is the server process's `VmHWM`.  The scenarios: "
          "`benchmarks/reliability.py`; each one backs a test in `tests/reliability`.\n")
    print(_table(["scenario", *drivers],
                 [[s.slug, *("ok" if results[d][s.slug].ok else "**FAIL**" for d in drivers)]
                  for s in scenarios]))
    summarised = [s for s in scenarios if s.summary is not None]
    if summarised:
        print("\n" + _table(["scenario", *drivers], [
            [s.slug, *(s.summary(results[d][s.slug]) if results[d][s.slug].figures
                       else "**FAILED**" for d in drivers)] for s in summarised]))
    failures = [o for d in drivers for o in results[d].values() if not o.ok]
    for outcome in failures:
        print("\n" + outcome.describe().replace("\n", "\n    "))
    print(f"\n{len(failures)} failed; {time.monotonic() - started:.0f} s in all.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
