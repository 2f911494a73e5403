"""`sanschat.fuzz`: the decoder, the invariant checks, and the command line."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sanschat
from sanschat import Chat, ProtocolError
from sanschat.examples import Echo
from sanschat.fuzz import (
    check_channel,
    check_protocol,
    decode,
    fuzz_protocol,
    load_corpus,
    load_dictionary,
    main,
    parse_dictionary,
    show_bytes,
    target_tokens,
)
from sanschat.fuzz._protocol import _cuttings
from sanschat.testing import ChatHarness, transcript


def _fuzz_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sanschat.fuzz`` on the sanschat under test, with tests/ importable."""
    return subprocess.run(
        [sys.executable, "-m", "sanschat.fuzz", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])},
    )


@given(st.binary(max_size=300))
def test_every_input_decodes_to_a_valid_case_and_passes_the_core_invariants(data: bytes) -> None:
    case = decode(data)
    assert case.script and case.sizes and case.abandon
    check_channel(data)


def test_decoding_is_deterministic() -> None:
    data = bytes(range(256)) * 2
    assert decode(data) == decode(data)


@pytest.mark.skipif(
    sanschat.COMPILED, reason="compiled code calls _take directly: monkeypatching cannot reach it"
)
def test_check_channel_rejects_a_core_that_loses_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from sanschat import _channel, _readers

    def lossy_take(buf: bytearray, size: int, end: int) -> bytes:
        data = bytes(buf[: max(0, size - 1)])  # drops the last byte of every piece
        del buf[:end]
        return data

    monkeypatch.setattr(_readers, "take", lossy_take)
    monkeypatch.setattr(_channel, "take", lossy_take)
    with pytest.raises(AssertionError):
        for seed in range(50):
            check_channel(bytes([1, 0, 10, 3, 5, 1, 0]) + b"abc\n" * (seed + 1))


def test_check_protocol_flags_an_answer_that_depends_on_the_cut() -> None:
    from test_testing import NaiveLines

    target = check_protocol(NaiveLines)
    with pytest.raises(AssertionError, match="depends on how the input is cut"):
        target(bytes([0, 0, 0, 0, 0, 0, 1, 0]) + b"hello\n")
    assert transcript(NaiveLines(), [b"hello\n"]).sent == b"line: hello\n"


def test_check_protocol_flags_an_exception_that_is_not_a_protocol_error() -> None:
    target = check_protocol(Store)
    with pytest.raises(AssertionError, match="the protocol raised KeyError"):
        target(bytes(8) + b"DEL x\r\n")
    target(bytes(8) + b"SET x 1\r\nDEL x\r\n")  # a correct request passes


def test_check_protocol_accepts_the_http_example() -> None:
    from sanschat.examples import HTTPRequestHandler

    target = check_protocol(HTTPRequestHandler)
    for data in (b"", b"\x00" * 8 + b"GET / HTTP/1.0\r\n\r\n", bytes(range(200))):
        target(data)


def test_main_runs_a_bounded_hypothesis_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "hypothesis", "--runs", "200", "--seconds", "30"]) == 0
    assert "no finding" in capsys.readouterr().out


def test_main_refuses_a_bad_budget() -> None:
    with pytest.raises(SystemExit):
        main(["--runs", "0"])


def test_main_refuses_a_target_without_a_factory() -> None:
    with pytest.raises(SystemExit, match="module:Factory"):
        main(["--target", "sanschat.examples"])


def test_command_line_finds_the_naive_protocol_bug() -> None:
    args = ("--engine", "hypothesis", "--runs", "300", "--target", "test_testing:NaiveLines")
    result = _fuzz_cli(*args)
    assert result.returncode != 0
    assert "depends on how the input is cut" in result.stdout + result.stderr


# ---------------------------------------------------------------------- the protocol fuzzer


class Echo8(Echo):
    """The correct handler: `Echo` with a tiny limit, so that frames are often too large."""

    max_frame_size = 8


class LosesReplies(Echo8):
    """The lost-reply bug of the drivers before issue 10, planted in a test double.

    On a peer's protocol error it closes abortively (`Chat.close` drops the queued output),
    so the reply to a valid first frame is lost when the oversized frame arrives in the same
    read, and sent when the input was cut between the two.
    """

    def protocol_error(self, error: ProtocolError) -> None:
        self.close()


class Store(Chat):
    """A key-value store with a planted bug: ``DEL`` of a missing key raises KeyError."""

    terminator = b"\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[bytes, bytes] = {}

    def found_frame(self, frame: bytes) -> None:
        command, _, rest = frame.partition(b" ")
        if command == b"SET":
            key, _, value = rest.partition(b" ")
            self.keys[key] = value
            self.push(b"+OK\r\n")
        elif command == b"DEL":
            del self.keys[rest]  # the bug: KeyError for a key never set
            self.push(b"+OK\r\n")
        else:
            self.push(b"-ERR\r\n")


class StoreWithTokens(Store):
    """The same bug; the class names its keywords itself."""

    fuzz_tokens = (b"SET", b"DEL")


class Blocks(Chat):
    """``BEGIN`` switches to ``END``-terminated blocks; an empty block raises (planted)."""

    terminator = b"\n"

    def found_frame(self, frame: bytes) -> None:
        if self.get_terminator() == b"END":
            if not frame:
                raise ValueError("empty block")  # the bug: only under the learned terminator
            self.push(b"block\n")
            self.set_terminator(b"\n")
        elif frame == b"BEGIN":
            self.set_terminator(b"END")
        else:
            self.push(b"?\n")


class CRLFNormaliser(Chat):
    """Frames by itself and normalises ``\\r\\n`` read by read: wrong when a read ends
    between ``\\r`` and ``\\n`` (a planted bug that only a cut inside a terminator shows)."""

    terminator = None
    fuzz_tokens = (b"\r\n",)

    def __init__(self) -> None:
        super().__init__()
        self.line = bytearray()

    def collect_incoming_data(self, data: bytes) -> None:
        self.line += data.replace(b"\r\n", b"\n")
        *lines, rest = self.line.split(b"\n")
        self.line = bytearray(rest)
        for line in lines:
            self.push(b"%d\n" % len(line))

    def found_terminator(self) -> None:
        pass


def _outcome(make_chat: Callable[[], Chat], chunks: Sequence[bytes]) -> tuple[bytes, bool]:
    """What the peer gets, computed independently of the fuzzer (for checking findings)."""
    harness = ChatHarness(make_chat(), catch=True)
    harness.feed(*chunks)
    harness.feed_eof()
    return bytes(harness.sent), harness.closed


@pytest.mark.parametrize("seed", range(5))
def test_protocol_fuzzer_finds_the_lost_reply_bug_within_its_ci_budget(seed: int) -> None:
    result = fuzz_protocol(LosesReplies, runs=2000, seconds=30, seed=seed)
    finding = result.finding
    assert finding is not None, result.summary()
    assert finding.problem == "the answer depends on how the input is cut"
    assert b"\r\n" in finding.data and b"".join(finding.chunks) == finding.data
    # the reply to a valid frame reaches the peer in one cutting only
    assert len(finding.cut.sent) != len(finding.whole.sent)
    assert finding.whole.answered == finding.cut.answered == "FrameTooLarge"
    assert finding.whole.error is None and finding.cut.error is None  # nothing escaped
    assert (finding.exception or "").startswith("FrameTooLarge: frame of at least")
    # checked without the fuzzer: the two cuttings really differ
    assert _outcome(LosesReplies, [finding.data]) != _outcome(LosesReplies, finding.chunks)
    assert (finding.whole.sent, finding.whole.closed) == _outcome(LosesReplies, [finding.data])
    assert (finding.cut.sent, finding.cut.closed) == _outcome(LosesReplies, finding.chunks)
    assert finding.run <= result.runs <= 2000 and finding.seed == seed


@pytest.mark.parametrize("seed", range(2))
def test_protocol_fuzzer_reports_no_finding_for_the_correct_echo(seed: int) -> None:
    result = fuzz_protocol(Echo8, runs=2000, seconds=60, seed=seed)
    assert result.finding is None, result.finding.report()
    # ... and the budget was spent on inputs that reach both paths
    assert result.runs == 2000, result.summary()
    assert result.framed > 1000 and result.replied > 500 and result.protocol_errors > 200


def test_a_finding_is_reproduced_by_its_seed() -> None:
    first = fuzz_protocol(LosesReplies, runs=2000, seconds=30, seed=7)
    again = fuzz_protocol(LosesReplies, runs=2000, seconds=30, seed=7)
    assert first.finding is not None and first == again
    others = {fuzz_protocol(LosesReplies, runs=2000, seconds=30, seed=s).finding for s in range(3)}
    assert len({f.data for f in others if f is not None}) > 1, "the seed changes nothing"


def test_the_report_names_the_input_the_cut_both_outcomes_and_the_exception() -> None:
    finding = fuzz_protocol(LosesReplies, runs=2000, seconds=30, seed=0).finding
    assert finding is not None
    report = finding.report()
    assert report.splitlines()[0] == f"FINDING (input {finding.run}, seed 0): {finding.problem}"
    assert f"input ({len(finding.data)} bytes): {show_bytes(finding.data)}" in report
    assert f"cut into {[len(c) for c in finding.chunks]}" in report
    assert f"whole input: {finding.whole}" in report and f"cut input:   {finding.cut}" in report
    assert "FrameTooLarge: frame of at least" in report
    assert "sanschat._errors" not in report


def test_protocol_fuzzer_reports_an_exception_that_is_not_a_protocol_error() -> None:
    result = fuzz_protocol(Store, runs=3000, seconds=30, seed=0, tokens=[b"DEL"])
    finding = result.finding
    assert finding is not None, result.summary()
    assert finding.problem.startswith("the chat raised KeyError, not a ProtocolError")
    assert b"DEL" in finding.data
    assert finding.exception is not None
    assert "Traceback" in finding.exception and "del self.keys[rest]" in finding.exception
    assert finding.chunks == (finding.data,)  # raised whole: no cut needed, none reported
    assert f"  not cut: {finding.whole}" in finding.report()
    assert "cut into" not in finding.report()


def test_without_its_keywords_the_store_bug_stays_hidden() -> None:
    # the contrast that shows the tokens matter: nothing in the default tokens spells DEL
    result = fuzz_protocol(Store, runs=1000, seconds=30, seed=0)
    assert result.finding is None and result.framed > 500


def test_the_target_class_can_name_its_tokens() -> None:
    result = fuzz_protocol(StoreWithTokens, runs=3000, seconds=30, seed=0)
    assert result.finding is not None and "KeyError" in result.finding.problem


def test_corpus_inputs_are_tried_first_and_lend_their_words(tmp_path: Path) -> None:
    (tmp_path / "a-set").write_bytes(b"SET k v\r\n")
    (tmp_path / "b-del").write_bytes(b"SET k v\r\nDEL k\r\nDEL k\r\n")
    assert load_corpus(tmp_path) == [b"SET k v\r\n", b"SET k v\r\nDEL k\r\nDEL k\r\n"]
    found = fuzz_protocol(Store, runs=10, seconds=30, corpus=load_corpus(tmp_path)).finding
    assert found is not None and found.run == 2
    # only its first, harmless input: the fuzzer mutates it with the words of the corpus
    mutated = fuzz_protocol(Store, runs=3000, seconds=30, corpus=[b"SET k v\r\nDEL k\r\n"])
    assert mutated.finding is not None and mutated.finding.run > 1


def test_terminators_the_chat_sets_become_tokens() -> None:
    result = fuzz_protocol(Blocks, runs=3000, seconds=30, seed=0, tokens=[b"BEGIN"])
    assert result.finding is not None, result.summary()
    assert "ValueError" in result.finding.problem and b"END" in result.finding.data


def test_a_terminator_cut_in_two_is_one_of_the_cuttings() -> None:
    result = fuzz_protocol(CRLFNormaliser, runs=2000, seconds=30, seed=0)
    finding = result.finding
    assert finding is not None, result.summary()
    assert any(a.endswith(b"\r") and b.startswith(b"\n") for a, b in pairwise(finding.chunks))
    data = b"ab\r\n" * 40  # too long to be cut byte by byte
    cuttings = _cuttings(data, [b"\r\n"], random.Random(0))
    assert any(len(c) == 2 and c[0].endswith(b"\r") for c in cuttings)
    assert (data[:4], data[4:]) in cuttings  # after the first frame


def test_protocol_fuzzer_refuses_a_bad_budget() -> None:
    with pytest.raises(ValueError, match="positive"):
        fuzz_protocol(Echo8, runs=0)
    with pytest.raises(ValueError, match="positive"):
        fuzz_protocol(Echo8, seconds=0)


@pytest.mark.parametrize("tokens", ["SET", b"SET", ["SET"], [b""], [7]])
def test_bad_fuzz_tokens_are_refused(tokens: object) -> None:
    class Bad(Echo8):
        fuzz_tokens = tokens

    with pytest.raises(TypeError, match="fuzz_tokens"):
        target_tokens(Bad)


def test_target_tokens_come_from_terminators_limit_and_attribute() -> None:
    class Lines(StoreWithTokens):
        terminator = (b"\r\n", b"\n")
        max_frame_size = 64

    terminators, tokens = target_tokens(Lines)
    assert terminators == [b"\r\n", b"\n"]
    assert tokens[:2] == [b"SET", b"DEL"]
    assert b"x" * 65 in tokens and b"64" in tokens and b"65" in tokens


def test_dictionaries_in_the_afl_style_are_parsed() -> None:
    text = (
        '# HTTP keywords\n\n  "GET"\nkw_post="POST "\nlen@2="Content-Length: "\n'
        '"\\r\\n"\n"\\x00\\xff"\n"a \\"quoted\\" \\\\ word"\n'
    )
    assert parse_dictionary(text) == [
        b"GET", b"POST ", b"Content-Length: ", b"\r\n", b"\x00\xff", b'a "quoted" \\ word'
    ]
    assert parse_dictionary(b'"\xe9t\xe9"') == [b"\xe9t\xe9"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("GET", "not a token line"),
        ('"GET', "not a token line"),
        ('kw="a" b', "not a token line"),
        ('""', "empty token"),
        ('"a"b"', 'unescaped "'),
        ('"\\q"', "bad escape"),
        ('"\\x4"', "bad escape"),
        ('"\\"', "bad escape"),
        ('"\u20ac"', "not a byte"),
    ],
)
def test_a_bad_dictionary_line_is_refused_with_its_place(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_dictionary(f'"ok"\n{line}\n', source="http.dict")
    assert str(info.value).startswith("http.dict:2: ")


def test_dictionary_and_corpus_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "store.dict"
    path.write_bytes(b'"DEL"\n')
    assert load_dictionary(path) == [b"DEL"]
    with pytest.raises(NotADirectoryError, match="not a directory"):
        load_corpus(path)


@given(st.binary(max_size=200).map(lambda b: b + b[:1] * 20))
def test_show_bytes_is_an_exact_python_expression(data: bytes) -> None:
    assert eval(show_bytes(data), {"__builtins__": {}}) == data


def test_show_bytes_shortens_runs() -> None:
    assert show_bytes(b"ab" + b"x" * 1000) == "b'ab' + b'x' * 1000"
    assert show_bytes(b"") == "b''"


def test_command_line_finds_the_lost_reply_bug_the_same_way_every_time() -> None:
    args = ("--target", "test_fuzz:LosesReplies", "--runs", "2000", "--seconds", "60")
    first, again = _fuzz_cli(*args, "--seed", "3"), _fuzz_cli(*args, "--seed", "3")
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.stdout == again.stdout
    out = first.stdout
    assert "FINDING (input" in out and "the answer depends on how the input is cut" in out
    assert "cut into [" in out and "whole input: sent=" in out and "cut input:   sent=" in out
    assert "reproduce: python -m sanschat.fuzz --target test_fuzz:LosesReplies --seed 3" in out


def test_command_line_uses_a_dictionary_file(tmp_path: Path) -> None:
    path = tmp_path / "store.dict"
    path.write_text('cmd="DEL"\n')
    result = _fuzz_cli("--target", "test_fuzz:Store", "--runs", "3000", "--dict", str(path))
    assert result.returncode == 1 and "KeyError" in result.stdout, result.stdout + result.stderr


def test_command_line_reports_a_bad_dictionary_as_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.dict"
    path.write_text('"ok"\nGET\n')
    result = _fuzz_cli("--target", "test_fuzz:Store", "--dict", str(path))
    assert result.returncode == 2 and f"{path}:2: not a token line" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "mutate"], "give it a --target"),
        (["--engine", "hypothesis", "--target", "x:Y", "--dict", "d"], "need a --target and"),
        (["--corpus", "somewhere"], "need a --target and"),
    ],
)
def test_main_refuses_options_that_do_not_fit(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(args)
    assert message in capsys.readouterr().err


def test_main_with_a_target_and_no_finding_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "sanschat.examples:Echo", "--runs", "300"]) == 0
    out = capsys.readouterr().out
    assert "mutate ran 300 inputs" in out and "no finding" in out
