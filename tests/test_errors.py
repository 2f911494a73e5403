"""The error tree: one root, the peer's faults apart from the programmer's."""

from __future__ import annotations

from sanschat import FrameTooLarge, ProtocolError, SanschatError


def test_protocol_errors_derive_from_the_root() -> None:
    assert issubclass(ProtocolError, SanschatError)
    assert issubclass(FrameTooLarge, ProtocolError)


def test_programmer_errors_are_not_sanschat_errors() -> None:
    assert not issubclass(TypeError, SanschatError)
    assert not issubclass(SanschatError, (TypeError, ValueError))


def test_frame_too_large_says_the_limit_the_size_and_what_is_buffered() -> None:
    error = FrameTooLarge(limit=10, size=11, buffered=30)
    assert (error.limit, error.size, error.buffered) == (10, 11, 30)
    assert "11" in str(error) and "10" in str(error) and "30" in str(error)
