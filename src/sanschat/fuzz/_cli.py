"""The command line, ``python -m sanschat.fuzz``, and the two generic engines.

Theory of operation: without ``--target`` the core is fuzzed (`check_channel`) by atheris
where it imports, else hypothesis.  With ``--target module:Factory`` the default engine is
``mutate`` (`fuzz_protocol`: inputs built from the target's tokens, a corpus and
dictionaries); ``--engine atheris`` or ``hypothesis`` fuzz the target with `check_protocol`
on raw bytes instead.  Exit status: 0 when the budget is spent with no finding, 1 with a
finding (its report is printed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence

from .._chat import Chat
from ._core import check_channel, check_protocol
from ._protocol import fuzz_protocol, load_corpus, load_dictionary

__all__ = ["main"]


def _load(spec: str) -> Callable[[], Chat]:
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise SystemExit(f"--target must look like package.module:Factory, not {spec!r}")
    factory: Callable[[], Chat] = getattr(importlib.import_module(module_name), attribute)
    return factory


def _run_hypothesis(target: Callable[[bytes], None], runs: int, seconds: float, seed: int) -> int:
    try:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis import strategies as st
    except ImportError:
        print("error: neither atheris nor hypothesis is installed: pip install 'sanschat[test]'")
        return 2
    deadline = time.monotonic() + seconds
    done = 0
    batch = max(1, min(runs, 500))
    while done < runs and time.monotonic() < deadline:
        size = min(batch, runs - done)

        @hypothesis_seed(seed + done)
        @settings(
            max_examples=size,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.binary(max_size=512))
        def property_(data: bytes) -> None:
            target(data)

        property_()
        done += size
    print(f"sanschat.fuzz: hypothesis ran {done} inputs, no finding")
    return 0


def _run_atheris(target: Callable[[bytes], None], runs: int, seconds: float, seed: int) -> int:
    atheris = importlib.import_module("atheris")
    # sanschat (and a --target's module) are imported already: instrument what is loaded,
    # so that libFuzzer sees coverage and grows a corpus instead of guessing blindly.
    atheris.instrument_all()
    budget = max(1, int(seconds))
    # libFuzzer takes -seed=0 as "pick one at random": shift by one to stay reproducible.
    argv = [sys.argv[0], f"-runs={runs}", f"-max_total_time={budget}", f"-seed={seed + 1}"]
    atheris.Setup(argv, target)
    atheris.Fuzz()  # exits the process: 0 when the budget is spent with no finding
    return 0  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0: budget spent, no finding; 1: finding)."""
    parser = argparse.ArgumentParser(
        prog="python -m sanschat.fuzz",
        description="Fuzz sanschat's Channel (or your Chat) for a bounded budget.",
    )
    parser.add_argument("--runs", type=int, default=10_000, help="inputs to try (default 10000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0); the same seed, same run"
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "atheris", "hypothesis", "mutate"),
        default="auto",
        help="auto: mutate for a --target, else atheris where it imports, else hypothesis",
    )
    parser.add_argument(
        "--target",
        metavar="MODULE:FACTORY",
        help="fuzz your Chat factory (e.g. sanschat.examples:Echo) instead of the core",
    )
    parser.add_argument(
        "--corpus",
        metavar="DIR",
        action="append",
        default=[],
        help="example inputs for the target, one per file (repeatable; mutate engine)",
    )
    parser.add_argument(
        "--dict",
        metavar="FILE",
        action="append",
        default=[],
        help='tokens for the target, one per line: "value" or name="value" (AFL style; '
        "repeatable; mutate engine)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs and --seconds must be positive")
    engine = args.engine
    if engine == "auto":
        engine = "mutate" if args.target else _generic_engine()
    if engine == "mutate" and not args.target:
        parser.error("--engine mutate fuzzes a protocol: give it a --target")
    if (args.corpus or args.dict) and engine != "mutate":
        parser.error("--corpus and --dict need a --target and the mutate engine")
    try:
        corpus = [item for folder in args.corpus for item in load_corpus(folder)]
        tokens = [token for path in args.dict for token in load_dictionary(path)]
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(
        f"sanschat.fuzz: {engine}, {args.runs} runs / {args.seconds:g} s, seed {args.seed}, "
        f"target {args.target or 'Channel'}",
        flush=True,
    )
    if engine == "mutate":
        result = fuzz_protocol(
            _load(args.target),
            runs=args.runs,
            seconds=args.seconds,
            seed=args.seed,
            corpus=corpus,
            tokens=tokens,
        )
        print(f"sanschat.fuzz: mutate ran {result.summary()}", flush=True)
        if result.finding is None:
            return 0
        print(result.finding.report(), flush=True)
        again = ["--seed", str(args.seed)] + [f"--corpus={c}" for c in args.corpus]
        again += [f"--dict={d}" for d in args.dict]
        print(f"reproduce: python -m sanschat.fuzz --target {args.target} {' '.join(again)}")
        return 1
    target = check_protocol(_load(args.target)) if args.target else check_channel
    if engine == "atheris":
        return _run_atheris(target, args.runs, args.seconds, args.seed)
    return _run_hypothesis(target, args.runs, args.seconds, args.seed)


def _generic_engine() -> str:
    try:
        importlib.import_module("atheris")
    except ImportError:
        return "hypothesis"
    return "atheris"
