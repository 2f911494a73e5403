"""Fuzzing a protocol: inputs built from its own tokens, each checked for cut-invariance.

Theory of operation: random bytes almost never contain ``\\r\\n``, so a fuzzer that only
draws random bytes never ends a frame and never reaches a protocol's logic.  This one builds
its inputs from *tokens*: the target's terminators (the class's, and every bytes or tuple
terminator a chat is seen to set while it runs), the tokens of the target's ``fuzz_tokens``
attribute, the tokens of ``--dict`` files, the frames and words of the ``--corpus`` inputs,
a few numbers, and a frame one byte longer than the target's ``max_frame_size``.  The corpus
inputs are tried first, as they are; then each input is either made fresh (tokens, frames
ended by terminators, a few random bytes) or a mutation of an earlier input (insert or
splice a token or a frame, repeat a slice or a token, cut a slice out, truncate, cross two
inputs, change a byte).  Inputs that made the chat behave in a new way (a new error, close
or reply pattern) join the pool that mutations start from.

Every input is run whole, then under a few cuttings: after a frame (where a terminator
ends), inside a terminator, at a random point, in random small chunks, and one byte at a
time when it is short.  The property: no exception but a `ProtocolError` escapes the chat
(with `Chat.protocol_error`, none does: the chat answers it), and what the peer observes
(`Outcome`: the bytes sent, whether it closed, the type of an escaped exception) is the
same for every cutting.  The first input that breaks it is shrunk (slices removed while
the same problem remains) and returned as a `Finding` with the input, the cutting, both
outcomes and the exception.

Determinism: everything random comes from one `random.Random(seed)`; nothing depends on
hash order or the clock, except that the time budget may end a run before its finding.
The same seed and the same target give the same inputs and the same finding.
"""

from __future__ import annotations

import itertools
import random
import re
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._channel import Terminator
from .._chat import Chat
from .._errors import ProtocolError
from ..testing import ChatHarness

__all__ = [
    "Finding",
    "FuzzResult",
    "Outcome",
    "fuzz_protocol",
    "load_corpus",
    "load_dictionary",
    "parse_dictionary",
    "show_bytes",
    "target_tokens",
]

#: Numbers that protocols count with (lengths, ports, status codes): spliced as ASCII.
_NUMBERS = (b"0", b"1", b"-1", b"2", b"10", b"100", b"255", b"256", b"65535", b"65536")
#: Bytes that random filler is drawn from, besides the bytes of the tokens.
_FILLER = b" :;=/abcxyzABC019\t\x00\xff"
#: Inputs at most this long are also fed one byte at a time.
_BYTEWISE = 64
#: Mutations start from a pool of at most this many inputs.
_POOL = 256
#: Checks the shrinker may spend on one finding.
_SHRINK_CHECKS = 400


def show_bytes(data: bytes) -> str:
    """*data* as a Python expression that is short even for long inputs: runs of 16 or more
    equal bytes are written ``b'x' * 65537``, so a report stays readable and pastes back."""
    parts: list[str] = []
    literal = bytearray()
    for value, run in itertools.groupby(data):
        count = len(list(run))
        if count < 16:
            literal += bytes([value]) * count
            continue
        if literal:
            parts.append(repr(bytes(literal)))
            literal.clear()
        parts.append(f"{bytes([value])!r} * {count}")
    if literal or not parts:
        parts.append(repr(bytes(literal)))
    return " + ".join(parts)


@dataclass(frozen=True)
class Outcome:
    """What the peer observed of one run: the bytes the chat sent, whether it closed, and
    the name of the type of the exception that escaped the chat (``None`` if none did).

    Only the type's name: an error's message may say how far into the stream it was noticed,
    which depends on the cut.  `answered` names the `ProtocolError` the chat answered with
    `Chat.protocol_error`, for the report; it is not compared (the peer sees the reply, not
    the error).
    """

    sent: bytes
    closed: bool
    error: str | None
    answered: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        text = f"sent={show_bytes(self.sent)} closed={self.closed} error={self.error}"
        return text if self.answered is None else f"{text} (answered {self.answered})"


@dataclass(frozen=True)
class Finding:
    """The first input on which a target broke the property, shrunk.

    `chunks` is the cutting that disagreed with the whole input (or the one whose run raised
    a non-`ProtocolError`; ``(data,)`` when the whole input did); `whole` and `cut` are the
    two outcomes; `exception` the formatted exception of the failing run, or of the first
    error seen in either run.
    """

    problem: str
    """One line: what is wrong (the answer depends on the cut, or the chat raised X)."""
    data: bytes
    """The input (after shrinking)."""
    chunks: tuple[bytes, ...]
    """The cutting of `data` that shows the problem."""
    whole: Outcome
    """What the peer saw when `data` arrived in one piece."""
    cut: Outcome
    """What the peer saw when `data` arrived as `chunks`."""
    exception: str | None
    """The exception, formatted with its traceback (None if no run raised)."""
    run: int
    """Which input of the run found it (1 is the first)."""
    seed: int
    """The seed of the run."""

    def report(self) -> str:
        """A readable, multi-line account of the finding, for a terminal."""
        sizes = [len(chunk) for chunk in self.chunks]
        chunks = ", ".join(show_bytes(chunk) for chunk in self.chunks)
        lines = [
            f"FINDING (input {self.run}, seed {self.seed}): {self.problem}",
            f"  input ({len(self.data)} bytes): {show_bytes(self.data)}",
        ]
        if len(self.chunks) == 1:  # the whole input was enough
            lines.append(f"  not cut: {self.whole}")
        else:
            lines += [
                f"  cut into {sizes}: [{chunks}]",
                f"  whole input: {self.whole}",
                f"  cut input:   {self.cut}",
            ]
        if self.exception is not None:
            lines.append("  exception:")
            lines.extend("    " + line for line in self.exception.rstrip().splitlines())
        return "\n".join(lines)


@dataclass(frozen=True)
class FuzzResult:
    """What `fuzz_protocol` did: the finding (if any) and how its inputs exercised the target.

    The counts show that a run without a finding tested something: how many inputs
    contained a terminator, got a reply, or ended in a `ProtocolError`.
    """

    finding: Finding | None
    runs: int
    """Inputs tried."""
    framed: int
    """Inputs that contained at least one of the target's terminators."""
    replied: int
    """Inputs to which the chat sent something back (whole)."""
    protocol_errors: int
    """Inputs whose whole run ended in a `ProtocolError`."""
    tokens: int
    """Tokens the inputs were built from, at the end of the run."""

    def summary(self) -> str:
        """One line: the counts, and the finding's problem or "no finding"."""
        verdict = "no finding" if self.finding is None else "FINDING: " + self.finding.problem
        return (
            f"{self.runs} inputs from {self.tokens} tokens ({self.framed} with a terminator, "
            f"{self.replied} answered, {self.protocol_errors} ended by a ProtocolError), {verdict}"
        )


# ---------------------------------------------------------------------- token sources

_DICT_LINE = re.compile(r'(?:[A-Za-z0-9_]+(?:@[0-9]+)?\s*=\s*)?"(.*)"')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def parse_dictionary(text: str | bytes, *, source: str = "<dictionary>") -> list[bytes]:
    """Parse a fuzzing dictionary in the AFL/libFuzzer style; return its tokens in order.

    One token per line, in double quotes, optionally named: ``"\\r\\n"``, ``kw1="GET"``,
    ``len@2="Content-Length: "``.  Blank lines and lines starting with ``#`` are skipped.
    Inside the quotes, ``\\\\`` is a backslash, ``\\"`` a quote and ``\\xHH`` any byte, as in
    AFL; ``\\r``, ``\\n`` and ``\\t`` are accepted too (an extension, for readability).  Other
    characters stand for themselves (a ``str`` is read as Latin-1, one character per byte).

    Raises:
        ValueError: naming *source* and the line, for a line that is not a quoted token, an
            unknown or cut escape, an unescaped quote, or an empty token.
    """
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    tokens: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        match = _DICT_LINE.fullmatch(line)
        if match is None:
            raise ValueError(f'{where}: not a token line (want "value" or name="value"): {raw!r}')
        tokens.append(_unescape(match.group(1), where))
    return tokens


def _unescape(body: str, where: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            raise ValueError(f'{where}: unescaped " inside a token (write \\")')
        if char != "\\":
            if ord(char) > 0xFF:
                raise ValueError(f"{where}: {char!r} is not a byte (write \\xHH escapes)")
            out.append(ord(char))
            i += 1
            continue
        escape = body[i + 1 : i + 2]
        if escape in _ESCAPES:
            out += _ESCAPES[escape].encode("latin-1")
            i += 2
        elif escape == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", body[i + 2 : i + 4]):
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        else:
            raise ValueError(
                f"{where}: bad escape {body[i : i + 4]!r} (known: \\\\ \\\" \\xHH \\r \\n \\t)"
            )
    if not out:
        raise ValueError(f"{where}: empty token")
    return bytes(out)


def load_dictionary(path: str | Path) -> list[bytes]:
    """Read the fuzzing dictionary at *path* (see `parse_dictionary`)."""
    return parse_dictionary(Path(path).read_bytes(), source=str(path))


def load_corpus(path: str | Path) -> list[bytes]:
    """Read every file under the directory *path* (recursively, by sorted path) as one input.

    Raises:
        NotADirectoryError: if *path* is not a directory.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise NotADirectoryError(f"corpus {str(path)!r} is not a directory")
    return [file.read_bytes() for file in sorted(folder.rglob("*")) if file.is_file()]


def _terminator_tokens(terminator: Terminator) -> list[bytes]:
    if isinstance(terminator, bytes):
        return [terminator]
    if isinstance(terminator, tuple):
        return list(terminator)
    return []


def target_tokens(make_chat: Callable[[], Chat]) -> tuple[list[bytes], list[bytes]]:
    """What a target tells about its input: ``(terminators, tokens)``.

    The terminators are those of a fresh chat's channel (each alternative of a tuple).  The
    tokens are the chat's (or the factory's) ``fuzz_tokens`` attribute, then frames at and
    one byte over the chat's ``max_frame_size`` (a limit over 1 MiB is left out: its frames
    would make inputs too slow), and the numbers of `_NUMBERS` and of the limit.

    Raises:
        TypeError: if ``fuzz_tokens`` is a str or bytes (not a collection of tokens), or
            holds something that is not bytes-like or is empty.
    """
    chat = make_chat()
    terminators = _terminator_tokens(chat.channel.get_terminator())
    declared: Any = getattr(chat, "fuzz_tokens", None)
    if declared is None:
        declared = getattr(make_chat, "fuzz_tokens", ())
    if isinstance(declared, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"fuzz_tokens must be a collection of bytes tokens, not {declared!r}")
    tokens: list[bytes] = []
    for token in declared:
        if not isinstance(token, (bytes, bytearray, memoryview)) or not token:
            raise TypeError(f"fuzz_tokens holds {token!r}: every token must be non-empty bytes")
        tokens.append(bytes(token))
    limit = chat.channel.max_frame_size
    numbers = list(_NUMBERS)
    if limit is not None:
        numbers += [str(limit).encode(), str(limit + 1).encode()]
        if limit <= 1 << 20:
            tokens += [b"x" * limit, b"x" * (limit + 1)]
    return terminators, [*tokens, *numbers]


def _words(data: bytes, terminators: Sequence[bytes]) -> list[bytes]:
    """The frames of a corpus input and the words of those frames (at most 64 of each)."""
    frames = [data]
    for terminator in terminators:
        frames = [piece for frame in frames for piece in frame.split(terminator)]
    frames = [frame for frame in frames if frame and len(frame) <= 256][:64]
    words = [word for frame in frames for word in frame.split(b" ") if word][:64]
    return frames + words


# ---------------------------------------------------------------------- running and checking


def _run(
    make_chat: Callable[[], Chat], chunks: Sequence[bytes], seen: list[Terminator]
) -> tuple[Outcome, BaseException | None]:
    """Feed *chunks* then end of stream to a fresh chat, as a driver would.

    Returns the outcome and the exception to show: the one that escaped the chat, else the
    `ProtocolError` it answered.  Notes in *seen* every terminator the chat had after a
    chunk.
    """
    chat = make_chat()
    answered: list[ProtocolError] = []
    hook = getattr(chat, "protocol_error", None)
    if hook is not None:

        def spy(error: ProtocolError) -> None:
            answered.append(error)
            hook(error)

        setattr(chat, "protocol_error", spy)  # noqa: B010 - an instance attribute, on purpose
    harness = ChatHarness(chat, catch=True)
    for chunk in chunks:
        harness.feed(chunk)
        terminator = chat.channel.get_terminator()
        if isinstance(terminator, (bytes, tuple)) and terminator not in seen:
            seen.append(terminator)
    harness.feed_eof()
    error = harness.error
    name = None if error is None else type(error).__name__
    protocol = type(answered[0]).__name__ if answered else None
    outcome = Outcome(bytes(harness.sent), harness.closed, name, protocol)
    return outcome, error if error is not None or not answered else answered[0]


def _positions(data: bytes, terminators: Sequence[bytes]) -> tuple[list[int], list[int]]:
    """Where frames end in *data* (just after a terminator), and cut points inside one."""
    ends: set[int] = set()
    inside: set[int] = set()
    for terminator in terminators:
        start = data.find(terminator)
        found = 0
        while start >= 0 and found < 64:
            ends.add(start + len(terminator))
            inside.update(range(start + 1, start + len(terminator)))
            start = data.find(terminator, start + 1)
            found += 1
    ends.discard(len(data))
    return sorted(ends), sorted(inside)


def _split(data: bytes, points: Iterable[int]) -> tuple[bytes, ...]:
    bounds = [0, *sorted({p for p in points if 0 < p < len(data)}), len(data)]
    return tuple(data[a:b] for a, b in itertools.pairwise(bounds))


def _cuttings(
    data: bytes, terminators: Sequence[bytes], rng: random.Random
) -> list[tuple[bytes, ...]]:
    """A few ways to cut *data*: after the first frame and after a random one, inside a
    terminator, at a random point, in random small chunks (up to 16 bytes, or 1/64 of a long
    input), and byte by byte if short."""
    if len(data) < 2:
        return []
    ends, inside = _positions(data, terminators)
    points: list[list[int]] = []
    if ends:
        points += [[ends[0]], [rng.choice(ends)]]
    if inside:
        points.append([rng.choice(inside)])
    points.append([rng.randrange(1, len(data))])
    most = max(16, len(data) // 64)  # a long input in at most ~128 chunks
    sizes = [rng.randint(1, most) for _ in range(rng.randint(1, 3))]
    cursor = 0
    walk: list[int] = []
    while cursor < len(data):
        cursor += sizes[len(walk) % len(sizes)]
        walk.append(cursor)
    points.append(walk)
    if len(data) <= _BYTEWISE:
        points.append(list(range(1, len(data))))
    cuttings: list[tuple[bytes, ...]] = []
    for chosen in points:
        chunks = _split(data, chosen)
        if len(chunks) > 1 and chunks not in cuttings:
            cuttings.append(chunks)
    return cuttings


def _describe(error: BaseException | None) -> str | None:
    """A `ProtocolError` in one line (it is the peer's doing); anything else with its
    traceback (it is a bug)."""
    if error is None:
        return None
    if isinstance(error, ProtocolError):
        return f"{type(error).__name__}: {error}"
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


@dataclass(frozen=True)
class _Problem:
    key: str  # what must stay the same while shrinking
    problem: str
    chunks: tuple[bytes, ...]
    whole: Outcome
    cut: Outcome
    exception: str | None


def _check(
    make_chat: Callable[[], Chat],
    data: bytes,
    terminators: list[bytes],
    rng: random.Random,
    seen: list[Terminator],
) -> tuple[Outcome, BaseException | None, _Problem | None]:
    """Run *data* whole and cut; return the whole run's outcome and exception (escaped or
    answered), and the first problem, if any."""
    whole, whole_error = _run(make_chat, [data], seen)
    if whole_error is not None and not isinstance(whole_error, ProtocolError):
        name = type(whole_error).__name__
        problem = f"the chat raised {name}, not a ProtocolError"
        found = _Problem("raised " + name, problem, (data,), whole, whole, _describe(whole_error))
        return whole, whole_error, found
    for chunks in _cuttings(data, terminators, rng):
        cut, cut_error = _run(make_chat, chunks, seen)
        if cut_error is not None and not isinstance(cut_error, ProtocolError):
            name = type(cut_error).__name__
            problem = f"the chat raised {name}, not a ProtocolError, on a cut input"
            found = _Problem("raised " + name, problem, chunks, whole, cut, _describe(cut_error))
            return whole, whole_error, found
        if cut != whole:
            problem = "the answer depends on how the input is cut"
            shown = _describe(whole_error or cut_error)
            return whole, whole_error, _Problem("cut", problem, chunks, whole, cut, shown)
    return whole, whole_error, None


# ---------------------------------------------------------------------- making inputs


class _Mutator:
    """Makes the inputs: fresh ones from tokens, or mutations of the pool's."""

    def __init__(
        self,
        rng: random.Random,
        terminators: list[bytes],
        tokens: list[bytes],
        pool: list[bytes],
        max_len: int,
    ) -> None:
        self.rng = rng
        self.terminators = terminators  # shared with the caller, who adds what it learns
        self.tokens = tokens
        self.pool = pool
        self.max_len = max_len

    def _terminator(self) -> bytes:
        return self.rng.choice(self.terminators) if self.terminators else b"\n"

    def _filler(self) -> bytes:
        alphabet = _FILLER + b"".join(self.terminators)
        return bytes(self.rng.choice(alphabet) for _ in range(self.rng.randint(1, 8)))

    def _piece(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.5 and self.tokens:
            return self.rng.choice(self.tokens)
        if roll < 0.75:
            return self._terminator()
        return self._filler()

    def _frame(self) -> bytes:
        """Pieces closed by a terminator (or, now and then, left open)."""
        body = b"".join(self._piece() for _ in range(self.rng.randint(0, 3)))
        return body + self._terminator() if self.rng.random() < 0.85 else body

    def fresh(self) -> bytes:
        return b"".join(self._frame() for _ in range(self.rng.randint(1, 6)))

    def _point(self, data: bytes) -> int:
        """A position in *data*, often a frame boundary (where splicing a frame is valid)."""
        if self.rng.random() < 0.5:
            ends, _ = _positions(data, self.terminators)
            if ends:
                return self.rng.choice([0, *ends, len(data)])
        return self.rng.randint(0, len(data))

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(9)
            i = self._point(data)
            j = rng.randint(i, min(len(data), i + rng.randint(1, 32)))
            if op == 0:  # splice a token
                data = data[:i] + self._piece() + data[i:]
            elif op == 1:  # splice a whole frame
                data = data[:i] + self._frame() + data[i:]
            elif op == 2:  # replace a slice with a token
                data = data[:i] + self._piece() + data[j:]
            elif op == 3:  # repeat a slice
                data = data[:i] + data[i:j] * rng.randint(2, 8) + data[j:]
            elif op == 4:  # repeat a token
                data = data[:i] + self._piece() * rng.randint(2, 16) + data[i:]
            elif op == 5:  # cut a slice out
                data = data[:i] + data[j:]
            elif op == 6:  # truncate
                data = data[:i]
            elif op == 7 and self.pool:  # cross with another input
                other = rng.choice(self.pool)
                data = data[:i] + other[rng.randint(0, len(other)) :]
            elif data:  # change one byte
                k = rng.randrange(len(data))
                data = data[:k] + bytes([rng.randrange(256)]) + data[k + 1 :]
        return data[: self.max_len]

    def next(self) -> bytes:
        if self.pool and self.rng.random() < 0.6:
            return self.mutate(self.rng.choice(self.pool))
        return self.fresh()[: self.max_len]


def _signature(whole: Outcome, data: bytes, terminators: Sequence[bytes]) -> tuple[object, ...]:
    """A coarse picture of the behaviour an input caused, for choosing what to mutate."""
    ends, _ = _positions(data, terminators)
    return (
        whole.error,
        whole.answered,
        whole.closed,
        min(len(whole.sent), 64).bit_length(),
        min(len(ends), 8),
    )


def _shrink(
    make_chat: Callable[[], Chat],
    data: bytes,
    found: _Problem,
    terminators: list[bytes],
    seed: int,
) -> tuple[bytes, _Problem]:
    """Remove parts of *data* while the same problem remains: whole frames first (cheap and
    meaningful), then slices of halving sizes; at most `_SHRINK_CHECKS` checks."""
    checks = 0

    def still(candidate: bytes) -> bool:
        nonlocal checks, found
        checks += 1
        _, _, problem = _check(make_chat, candidate, terminators, random.Random(seed), [])
        if problem is None or problem.key != found.key:
            return False
        found = problem
        return True

    index = 0
    while checks < _SHRINK_CHECKS:
        bounds = [0, *_positions(data, terminators)[0], len(data)]
        if index + 1 >= len(bounds):
            break
        candidate = data[: bounds[index]] + data[bounds[index + 1] :]
        if not still(candidate):
            index += 1
        else:
            data = candidate
    size = len(data) // 2
    while size >= 1 and checks < _SHRINK_CHECKS:
        start = 0
        while start < len(data) and checks < _SHRINK_CHECKS:
            candidate = data[:start] + data[start + size :]
            if still(candidate):
                data = candidate
            else:
                start += size
        size //= 2
    return data, found


def fuzz_protocol(
    make_chat: Callable[[], Chat],
    *,
    runs: int = 10_000,
    seconds: float = 60.0,
    seed: int = 0,
    corpus: Sequence[bytes] = (),
    tokens: Sequence[bytes] = (),
    max_len: int | None = None,
    shrink: bool = True,
) -> FuzzResult:
    """Fuzz the `Chat` factory *make_chat* for at most *runs* inputs and *seconds* seconds.

    Each input is checked as the module docstring says: no exception but `ProtocolError`,
    and the same `Outcome` whole and cut.  The search stops at the first finding.

    Args:
        make_chat: makes a fresh chat per run (a `Chat` subclass, or any factory).
        seed: the seed of every random choice: the same seed, the same inputs and finding.
        corpus: example inputs; tried first as they are, then mutated; their frames and
            words become tokens.
        tokens: more tokens (keywords, numbers, terminators), e.g. from `load_dictionary`.
        max_len: the longest input made; default 512, or enough for two frames over the
            target's ``max_frame_size`` where that is larger (at most 2 MiB).
        shrink: shrink the finding's input before returning it.

    Raises:
        ValueError: if *runs* or *seconds* is not positive.
    """
    if runs < 1 or seconds <= 0:
        raise ValueError(f"runs and seconds must be positive, got {runs!r} and {seconds!r}")
    rng = random.Random(seed)
    terminators, own = target_tokens(make_chat)
    pool = list(dict.fromkeys(bytes(item) for item in corpus))
    words = [word for item in pool for word in _words(item, terminators)]
    all_tokens = list(dict.fromkeys([*terminators, *own, *map(bytes, tokens), *words]))
    if max_len is None:
        limit = make_chat().channel.max_frame_size
        max_len = 512 if limit is None else max(512, min(2 * limit + 64, 2 << 20))
    mutator = _Mutator(rng, terminators, all_tokens, pool, max_len)
    seen: list[Terminator] = []
    signatures: set[tuple[object, ...]] = set()
    corpus_inputs = list(pool)
    deadline = time.monotonic() + seconds
    done = framed = replied = protocol_errors = 0
    finding: Finding | None = None
    while done < runs and time.monotonic() < deadline:
        data = corpus_inputs[done] if done < len(corpus_inputs) else mutator.next()
        done += 1
        whole, whole_error, problem = _check(make_chat, data, terminators, rng, seen)
        framed += any(terminator in data for terminator in terminators)
        replied += bool(whole.sent)
        protocol_errors += isinstance(whole_error, ProtocolError)
        if problem is not None:
            if shrink:
                data, problem = _shrink(make_chat, data, problem, terminators, seed)
            finding = Finding(
                problem.problem,
                data,
                problem.chunks,
                problem.whole,
                problem.cut,
                problem.exception,
                done,
                seed,
            )
            break
        for terminator in seen:  # terminators the chat set itself: frames end there too
            for token in _terminator_tokens(terminator):
                if token not in terminators:
                    terminators.append(token)
                    all_tokens.append(token)
        signature = _signature(whole, data, terminators)
        if signature not in signatures:
            signatures.add(signature)
            if len(pool) < _POOL:
                pool.append(data)
            else:
                pool[rng.randrange(_POOL)] = data
    return FuzzResult(finding, done, framed, replied, protocol_errors, len(all_tokens))
