"""WireDecoder (check_batch read from its bytes, eir/_fastpath_wire.c) against RpcDecoder (msgpack).

Streams of requests of every kind (usual and odd batches, check, ping, notifications, bin method
names, garbage, oversize, deep nesting), cut into random chunks, go to both decoders: every feed must
give the same items (a WireBatch standing for the Request msgpack makes of it), the same violations, the
same buffered count. A large message fed a byte at a time must be read with work linear in its size.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir import fastpath
from eir.engine import Bundle
from eir.state import MemoryState
from eir.transports.rpc_codec import Item, Request, RpcDecoder, WireBatch, encode_request
from eir.transports.rpc_wire import WireDecoder, make_decoder
from tests.conftest import T0
from tests.test_fastpath import RULES, _index

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")
SCANNER = fastpath.wire_scanner()

_ascii = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=70)
_plain = st.one_of(_ascii, st.none(), st.integers(0, 2**64 - 1), st.sampled_from(["35693803564380", "09121234567"]))
_odd_scalar = st.one_of(st.booleans(), st.integers(-(2**63), -1), st.floats(allow_nan=False), st.text(max_size=5),
                        st.text(st.characters(max_codepoint=127), min_size=200, max_size=300), st.binary(max_size=4))
_item = st.one_of(
    st.lists(_plain, min_size=2, max_size=5),
    st.lists(_plain, min_size=2, max_size=5),
    st.lists(st.one_of(_plain, _odd_scalar), max_size=16),
    _plain, _odd_scalar,
    st.lists(st.lists(_plain, max_size=2), min_size=1, max_size=3),  # nested
    st.dictionaries(_ascii, _plain, max_size=2),
)
_msgid = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 127, 128, 255, 256, 65535, 65536]))


def _raw(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


_message = st.one_of(
    st.tuples(_msgid, st.lists(_item, max_size=20)).map(lambda t: encode_request(t[0], "check_batch", [t[1]])),
    st.tuples(_msgid, st.lists(st.lists(_plain, min_size=2, max_size=5), max_size=40))
    .map(lambda t: encode_request(t[0], "check_batch", [t[1]])),
    st.tuples(_msgid, st.lists(_plain, max_size=5)).map(lambda t: encode_request(t[0], "check", t[1])),
    _msgid.map(lambda m: encode_request(m, "ping", [])),
    st.lists(_item, max_size=3).map(lambda items: _raw([2, "check_batch", [items]])),  # a notification
    _msgid.map(lambda m: _raw([0, m, b"check_batch", [[["1", "2"]]]])),  # a bin method name
    st.sampled_from([  # near misses of the header: other encodings of the same values, other shapes
        b"\x94\x00\xcf" + (5).to_bytes(8, "big") + b"\xabcheck_batch\x91\x91\x92\xa11\xc0",
        b"\x94\x00\x05\xd9\x0bcheck_batch\x91\x91\x92\xa11\xc0",
        b"\x94\x00\x05\xabcheck_batch\x91\xdc\x00\x01\x92\xa11\xc0",
        b"\x94\x00\x05\xabcheck_batch\x91\xdd\x00\x00\x00\x01\x92\xa11\xc0",
        b"\x94\x00\x05\xabcheck_batch\x91\xdd\xff\xff\xff\xff\x92\xa11\xc0",  # > msgpack's max_array_len
        b"\x94\x00\x05\xabcheck_batch\x92\x90\x90",
        b"\x94\x00\x05\xabcheck_batch\x91\x81\xa11\xc0",
        b"\x94\x00\x05\xabcheck_batch\x91\x91\x92\xa2\xff\xfe\xc0",  # not UTF-8
        b"\x94\x00\x05\xabcheck_batch\x91\x91\x92\xa11\xc1",  # never used
        b"\x94\x00\x05\xabcheck_batch\x91\x91\xdc\x00\x02\xa11\xc0",
        b"\x94\x00\xd0\x05\xabcheck_batch\x91\x90",
        b"\x94\x01\x05\xabcheck_batch\x91\x90",
        b"\x93\x00\x05\xabcheck_batch",
        b"\x94\x00\x05\xabcheck_bitch\x91\x90",
    ]),
    st.integers(1, 3_000).map(lambda d: b"\x94\x00\x01\xabcheck_batch\x91" + b"\x91" * d),  # deep nesting
    st.binary(max_size=12),  # garbage
    st.integers(500, 3_000).map(lambda n: encode_request(9, "check_batch", [[["35693803564380", "x" * 30]] * n])),
)


def _same(item: Item) -> Item:
    """A WireBatch as the Request msgpack decodes from the same bytes."""
    if type(item) is WireBatch:
        assert item.data[item.items_at - 1 :][:1] or item.n == 0
        return Request(item.msgid, "check_batch", [item.items()])
    return item


def _cuts(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_message, min_size=1, max_size=8), st.lists(st.integers(0, 10**6), max_size=12),
       st.sampled_from([1_024, 4_096, 65_536]), st.booleans())
def test_same_items_as_msgpack(messages: list[bytes], cuts: list[int], limit: int, truncate: bool) -> None:
    data = b"".join(messages)
    if truncate:
        data = data[: len(data) - 1]
    assert SCANNER is not None
    ref, wire = RpcDecoder(limit), WireDecoder(limit, SCANNER)
    for chunk in _cuts(data, cuts):
        assert [_same(i) for i in wire.feed(chunk)] == ref.feed(chunk)
        assert (wire.buffered, wire.broken) == (ref.buffered, ref.broken)


def test_byte_at_a_time_and_every_chunking_of_a_mixed_stream() -> None:
    assert SCANNER is not None
    data = b"".join([encode_request(1, "check_batch", [[["35693803564380", "09121234567", 1, None, ""]] * 3]),
                     encode_request(2, "check", ["1", "2"]), encode_request(3, "check_batch", [[]]),
                     encode_request(4, "check_batch", [[[True, 1.5], 7, ["a", "b"]]]), encode_request(5, "ping", [])])
    expected = RpcDecoder(4_096).feed(data)
    assert [type(i) for i in WireDecoder(4_096, SCANNER).feed(data)] == [WireBatch, Request, WireBatch, WireBatch,
                                                                         Request]
    for step in (1, 2, 3, 7, 50):
        wire = WireDecoder(4_096, SCANNER)
        got = [_same(i) for k in range(0, len(data), step) for i in wire.feed(data[k : k + step])]
        assert got == expected


def test_a_large_message_fed_a_byte_at_a_time_is_read_in_linear_work() -> None:
    # Every scanner call resumes where the last one stopped: the bytes it goes over add up to the message's
    # length, and each call re-reads at most the incomplete element it stopped at (a few header bytes).
    assert SCANNER is not None
    item = ["35693803564380", "09121234567", 2, 1_790_000_000]
    data = encode_request(77, "check_batch", [[item] * 30_000])
    assert len(data) > 900_000
    calls: list[tuple[int, int]] = []
    heads = 0

    class Counting:
        def wire_head(self, buf: bytearray, pos: int, max_items: int) -> Any:
            nonlocal heads
            heads += 1
            return SCANNER.wire_head(buf, pos, max_items)

        def wire_scan(self, buf: bytearray, pos: int, left: int, elems: int) -> tuple[int, int, int]:
            out: tuple[int, int, int] = SCANNER.wire_scan(buf, pos, left, elems)
            calls.append((pos, out[0]))
            return out

    dec = WireDecoder(1 << 20, Counting())  # type: ignore[arg-type]
    got = [i for k in range(len(data)) for i in dec.feed(data[k : k + 1])]
    assert len(got) == 1 and type(got[0]) is WireBatch and got[0].n == 30_000
    assert heads <= 32  # the header, re-read until complete
    assert all(a == prev_b for (a, _), (_, prev_b) in zip(calls[1:], calls, strict=False))
    assert calls[-1][1] - calls[0][0] == len(data) - got[0].items_at
    assert len(calls) <= len(data)


def test_a_small_limit_keeps_the_plain_decoder() -> None:
    assert type(make_decoder(512)) is RpcDecoder
    assert type(make_decoder(1 << 20)) is WireDecoder


_item_value = st.one_of(
    st.sampled_from(["356938035643809", "35693803564380", "imei-356938035643809", "356938035643808", "09121234567",
                     "+989121234567", "+4915112345678", "0912", "", "1", "16", "17", "432111234567890"]),
    st.none(), st.integers(0, 2**64 - 1), st.sampled_from([1, 2, 16, 17, T0, T0 + 0.5, -1, True]), _ascii,
    st.text(min_size=1, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.lists(_item_value, min_size=2, max_size=5), st.lists(_item_value, max_size=7),
                          _item_value), max_size=20),
       st.sampled_from(["default", "strict"]))
def test_parse_wire_items_is_parse_items(items: list[Any], rules: str) -> None:
    # The same items, decoded (parse_items) or as msgpack bytes (parse_wire_items): the same BatchItems, the
    # same items left to Python, and data[pos:stop] of each is the item msgpack decodes.
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
    fast = fastpath.accelerator(Bundle.of(index, RULES[rules]), MemoryState())
    assert fast is not None and SCANNER is not None
    data = encode_request(1, "check_batch", [items])
    head = SCANNER.wire_head(data, 0, 1_000)
    scan = SCANNER.wire_scan(data, head[2], len(items), 0)
    if scan[1] == -1:  # an item the scanner does not read (a non-ASCII str): msgpack's message
        assert any(type(v) is str and not v.isascii() for it in items for v in (it if type(it) is list else [it]))
        return
    assert scan == (len(data), 0, 0)
    n, size = len(items), fastpath.BATCH_ITEM_SIZE
    by_list, by_wire = bytearray(n * size), bytearray(n * size)
    left_list, left_wire = [], []
    i = 0
    while i < n:
        i = fast.parse_items(items, i, n, T0, by_list)
        if i < n:
            left_list.append(i)
            i += 1
    i, pos = 0, head[2]
    while i < n:
        i, pos, stop = fast.parse_wire_items(data, pos, i, n, T0, by_wire)
        if i < n:
            left_wire.append(i)
            assert msgpack.unpackb(data[pos:stop], raw=False) == items[i]
            i, pos = i + 1, stop
    assert pos == len(data) and left_wire == left_list
    # A slot left to Python keeps kind 0 (ITEM_PYTHON, the last field) whatever a parser wrote before declining.
    for k in range(n):
        a, b = slice(k * size, (k + 1) * size), slice((k + 1) * size - 8, (k + 1) * size)
        assert (by_wire[b], by_list[b]) == (bytes(8), bytes(8)) if k in left_list else by_wire[a] == by_list[a]


@pytest.mark.parametrize("first", [b"\xc1", encode_request(1, "ping", []) + b"\xc1", b"\x91\xc1"])
def test_nothing_after_a_violation_in_a_feed_larger_than_the_limit(first: bytes) -> None:
    assert SCANNER is not None
    data = first + encode_request(2, "check_batch", [[["35693803564380", "09121234567"]]]) * 200
    ref, wire = RpcDecoder(1_024), WireDecoder(1_024, SCANNER)
    assert [_same(i) for i in wire.feed(data)] == ref.feed(data)
    assert wire.broken and wire.feed(data) == []


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 210), st.integers(0, 40), st.integers(0, 15))
def test_the_scanner_on_any_bytes_stays_within_them(data: bytes, pos: int, left: int, elems: int) -> None:
    # Attacker-controlled bytes: every answer stays within the buffer, and a position only moves forward.
    assert SCANNER is not None
    head = SCANNER.wire_head(data, pos, 1_000)
    assert head in (0, -1) or (pos < head[2] <= len(data) and 0 <= head[1] <= 1_000)
    if elems > 0 and left == 0:
        with pytest.raises(ValueError):
            SCANNER.wire_scan(data, pos, left, elems)
        return
    p, items_left, elems_left = SCANNER.wire_scan(data, pos, left, elems)
    assert items_left == -1 or (pos <= p <= max(pos, len(data)) and 0 <= items_left <= left)
    assert 0 <= elems_left <= 15


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 130), st.integers(0, 6))
def test_parse_wire_items_on_any_bytes_stays_within_them(data: bytes, pos: int, n: int) -> None:
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
    fast = fastpath.accelerator(Bundle.of(index, RULES["default"]), MemoryState())
    assert fast is not None
    buf = bytearray(n * fastpath.BATCH_ITEM_SIZE)
    try:
        i, p, stop = fast.parse_wire_items(data, pos, 0, n, T0, buf)
    except ValueError:
        return
    assert 0 <= i <= n and pos <= p <= stop <= len(data)
