"""Sans-IO MessagePack-RPC codec: feed bytes, get requests; encode answers with one reused packer.

Wire convention (msgpack-rpc): request ``[0, msgid, method, params]``, response
``[1, msgid, error, result]``, notification ``[2, method, params]`` (never answered). ``msgid`` is a
uint32. No I/O happens here: :class:`RpcDecoder` turns received bytes into :class:`Request`,
:class:`Notification` and :class:`Violation` items, and :class:`RpcEncoder` turns decisions and errors
into response bytes. Result maps of deadline-less decisions are packed once per reason, and the map of
a decision with a deadline is a precomputed prefix plus the packed deadline.

Bounds: one message may not exceed ``max_message_bytes`` (counted from the end of the previous one).
Bytes that are not msgpack, or msgpack that is not a request, are a :class:`Violation`: the caller
answers it and closes the connection, since the byte stream can no longer be trusted to be in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

import msgpack

from eir.model import VERDICT_OF, Decision, Reason

REQUEST: Final = 0
RESPONSE: Final = 1
NOTIFICATION: Final = 2
MAX_MSGID: Final = 0xFFFF_FFFF
MAX_ERROR_MESSAGE: Final = 512

# Error codes (the "code" of an error map).
INVALID_REQUEST: Final = "invalid_request"  # not a msgpack-rpc request: answered, then the connection closes
INVALID_PARAMS: Final = "invalid_params"
UNKNOWN_METHOD: Final = "unknown_method"
TOO_LARGE: Final = "too_large"
NOT_READY: Final = "not_ready"
OVERLOADED: Final = "overloaded"
UNAVAILABLE: Final = "unavailable"


class Request(NamedTuple):
    """A call to answer. ``params`` is whatever the client sent (the dispatcher validates it)."""

    msgid: int
    method: str
    params: Any


class Notification(NamedTuple):
    """A call that expects no answer."""

    method: str
    params: Any


class Violation(NamedTuple):
    """The stream is broken: answer ``code``/``message`` (to ``msgid`` when known) and close."""

    code: str
    message: str
    msgid: int | None = None


class WireBatch(NamedTuple):
    """A ``check_batch`` request read from its bytes (eir.transports.rpc_wire): its ``n`` items are the
    msgpack values at ``data[items_at:]``, not decoded yet (eir.transports.rpc_batch parses them)."""

    msgid: int
    n: int
    data: bytes
    items_at: int

    def items(self) -> list[Any]:
        """The items as msgpack decodes them (what the Request's params would have held)."""
        items: list[Any] = msgpack.unpackb(self.data, raw=False, use_list=True)[3][0]
        return items


Item = Request | Notification | Violation | WireBatch


class RpcDecoder:
    """Incremental request decoder with a hard bound on buffered bytes."""

    __slots__ = ("_end", "_fed", "_limit", "_shift", "_unpacker", "broken")

    def __init__(self, max_message_bytes: int) -> None:
        self._limit = max_message_bytes
        self._unpacker = new_unpacker(max_message_bytes)
        self._fed = 0  # stream offset of the bytes fed so far
        self._end = 0  # stream offset where the last complete message ended
        self._shift = 0  # stream offset of the unpacker's offset 0 (eir.transports.rpc_wire feeds it a part)
        self.broken = False

    @property
    def buffered(self) -> int:
        """Bytes received since the last complete message (the unpacker parses partial messages as
        they arrive, so its own buffer does not bound a message: this count does)."""
        return self._fed - self._end

    def feed(self, data: bytes | bytearray | memoryview) -> list[Item]:
        """Consume received bytes; return the complete items they finish (a Violation is always last)."""
        out: list[Item] = []
        if self.broken:
            return out
        limit = self._limit
        view = memoryview(data)
        pos, n = 0, len(view)
        while pos < n:
            room = limit - (self._fed - self._end)
            if room <= 0:
                # `limit` bytes since the last message ended and still no complete one: too large.
                self.broken = True
                out.append(Violation(TOO_LARGE, f"message larger than {limit} bytes"))
                return out
            take = min(room, n - pos)
            self._fed += take
            pos += take
            if not self._take(view[pos - take : pos], out):
                return out
        return out

    def _take(self, chunk: memoryview, out: list[Item]) -> bool:
        """Decode the next ``chunk`` of at most the bytes left to the limit; False once broken."""
        self._unpacker.feed(chunk)
        return self._drain(out)

    def _drain(self, out: list[Item]) -> bool:
        unpacker = self._unpacker
        try:
            for obj in unpacker:
                self._end = self._shift + unpacker.tell()
                item = classify(obj)
                out.append(item)
                if type(item) is Violation:
                    self.broken = True
                    return False
                if self._handover():
                    break
        except ValueError as e:  # FormatError, StackError, UnicodeDecodeError, limits: all ValueErrors
            self.broken = True
            out.append(Violation(INVALID_REQUEST, f"not msgpack-rpc: {type(e).__name__}"))
            return False
        return True

    def _handover(self) -> bool:
        """After each message: True when the unpacker is to stop (eir.transports.rpc_wire takes the rest)."""
        return False


def new_unpacker(max_message_bytes: int) -> Any:
    """The Unpacker of a connection: no message larger than ``max_message_bytes``."""
    # Array/map/str lengths default to bounds derived from max_buffer_size; nesting depth is bounded by the C
    # unpacker's stack (StackError).
    return msgpack.Unpacker(max_buffer_size=max_message_bytes, raw=False, use_list=True)


def classify(obj: Any) -> Item:
    """Turn one decoded msgpack object into a request, a notification or a violation."""
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        return Violation(INVALID_REQUEST, "expected [0, msgid, method, params]")
    kind, n = obj[0], len(obj)
    if kind == REQUEST and n == 4:
        msgid, method = obj[1], obj[2]
        if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
            return Violation(INVALID_REQUEST, "msgid must be a uint32")
        name = _method(method)
        if name is None:
            return Violation(INVALID_REQUEST, "method must be a string", msgid)
        return Request(msgid, name, obj[3])
    if kind == NOTIFICATION and n == 3:
        name = _method(obj[1])
        if name is None:
            return Violation(INVALID_REQUEST, "method must be a string")
        return Notification(name, obj[2])
    return Violation(INVALID_REQUEST, "expected [0, msgid, method, params] or [2, method, params]")


def _method(m: Any) -> str | None:
    if type(m) is str:
        return m if len(m) <= 64 else None
    if type(m) is bytes and len(m) <= 64:  # old clients send the method as raw bytes
        try:
            return m.decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


class RpcEncoder:
    """Response encoder; one per connection (the packer is reused, not thread-safe)."""

    __slots__ = ("_pack", "_packer", "_plain", "_pong", "_prefix", "prefixes")
    _pack: Callable[[Any], bytes]
    _packer: Any
    _pong: bytes

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self._pack = self._packer.pack
        self._prefix: dict[Reason, bytes] = {}
        self._plain: dict[Reason, bytes] = {}
        for r in Reason:
            v = VERDICT_OF[r]
            head = b"\x84" + b"".join(msgpack.packb(x) for x in (
                "verdict", v.name, "status", v.status, "reason", r.value, "deadline"))  # fmt: skip
            self._prefix[r] = head
            self._plain[r] = head + b"\xc0"
        self._pong = b"\xc0" + msgpack.packb("pong")
        #: Per reason, the packed result map up to its "deadline" key (the C accelerator packs the value).
        self.prefixes = self._prefix

    def result(self, d: Decision) -> bytes:
        """The packed result map ``{"verdict", "status", "reason", "deadline"}`` of a decision."""
        dl = d.deadline
        if dl is None:
            return self._plain[d.reason]
        return self._prefix[d.reason] + self._pack(dl)

    def ok(self, msgid: int, result: bytes) -> bytes:
        """``[1, msgid, nil, result]`` around an already packed result."""
        return b"\x94\x01" + self._pack(msgid) + b"\xc0" + result

    def ok_list(self, msgid: int, results: list[bytes]) -> bytes:
        """``[1, msgid, nil, [results...]]`` around already packed results."""
        header: bytes = self._packer.pack_array_header(len(results))
        return b"".join((b"\x94\x01", self._pack(msgid), b"\xc0", header, *results))

    def pong(self, msgid: int) -> bytes:
        """The answer to ``ping``."""
        return b"\x94\x01" + self._pack(msgid) + self._pong

    def error(self, msgid: int | None, code: str, message: str) -> bytes:
        """``[1, msgid, {"code", "message"}, nil]``; msgid nil when the request had none usable."""
        return self._pack([RESPONSE, msgid, {"code": code, "message": message[:MAX_ERROR_MESSAGE]}, None])


def encode_request(msgid: int, method: str, params: Any) -> bytes:
    """A request's bytes (for clients, tests and benchmarks)."""
    data: bytes = msgpack.packb([REQUEST, msgid, method, params], use_bin_type=True)
    return data
