"""Producers: the ``more()`` protocol and the adapters for bytes and iterables."""

from __future__ import annotations

import pytest

from sanschat import IterableProducer, Producer
from sanschat._producers import as_producer, checked_chunk


def test_iterable_producer_skips_empty_chunks_and_ends_with_empty_bytes() -> None:
    producer = IterableProducer([b"", b"a", bytearray(b"b"), b"", memoryview(b"c")])
    assert [producer.more() for _ in range(4)] == [b"a", b"b", b"c", b""]


def test_objects_with_more_are_producers() -> None:
    class Mine:
        def more(self) -> bytes:
            return b""

    assert isinstance(Mine(), Producer)
    assert as_producer(Mine()).__class__ is Mine


def test_as_producer_queues_bytes_like_values_as_bytes() -> None:
    assert as_producer(bytearray(b"ab")) == b"ab"
    view = memoryview(b"xy")
    assert bytes(as_producer(view)) == b"xy"  # type: ignore[arg-type]


def test_as_producer_refuses_str_with_a_hint_to_encode() -> None:
    with pytest.raises(TypeError, match="encode"):
        as_producer("text")


def test_checked_chunk_names_the_producer_and_the_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"producer 'P' returned int"):
        checked_chunk("P", 5)


def test_checked_chunk_copies_mutable_buffers() -> None:
    data = bytearray(b"ab")
    chunk = checked_chunk("P", data)
    data[0] = 0
    assert chunk == b"ab"
