"""The RPC decoder with the C accelerator: ``check_batch`` requests read straight from their bytes.

msgpack's Unpacker would make a list and two or three str objects of every item of a batch, which
eir/_fastpath_raw.c's ``parse_items`` reads once and which are then freed: about a sixth of the
service's time per item. :class:`WireDecoder` lets eir/_fastpath_wire.c split the usual message,
``[0, msgid, "check_batch", [[item, ...]]]`` with items that are flat arrays of scalars (see that file
for the exact forms), into a :class:`~eir.transports.rpc_codec.WireBatch` (msgid, item count, bytes);
the batch's phase 1 (eir.transports.rpc_batch) parses the item bytes against the bundle it pinned
(``FastCheck.parse_wire_items``) and hands an item it declines to msgpack and ``parse_params``, so its
``invalid_params`` answer is the one of the Python path.

Every other message is msgpack's: the moment the scanner meets a byte it does not read, the message's
bytes so far (and the rest of the chunk) go to the same Unpacker as in
:class:`~eir.transports.rpc_codec.RpcDecoder`, which then decodes the stream, its errors, violations
and limits unchanged. The scanner takes over again at a message boundary: when the Unpacker has
nothing buffered, or right after a message it decoded when the bytes that follow came in the same
chunk and may start a check_batch (the Unpacker, which had not begun to parse them, is then replaced
by a fresh one). The byte counting of the ``max_message_bytes`` bound is :class:`RpcDecoder`'s own
loop, so ``too_large`` comes at the same byte. Since the scanner reads only values msgpack decodes
without an error, a message it completes is exactly the Request msgpack would have made of it.

Bounded work: a partial message is resumed where the scanner stopped (position, items left, elements
left), never rescanned from its start; bytes that arrive one at a time cost a constant each.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from eir import fastpath
from eir.transports.rpc_codec import Item, RpcDecoder, WireBatch, new_unpacker

#: Below this bound a str of an item (up to 255 bytes) could exceed msgpack's max_str_len (the bound).
MIN_WIRE_LIMIT: Final = 1_024


class WireDecoder(RpcDecoder):
    """:class:`RpcDecoder` that reads the usual ``check_batch`` itself (same items, else a WireBatch)."""

    __slots__ = ("_at", "_back", "_base", "_buf", "_elems", "_fresh", "_half", "_head", "_left", "_msgid", "_n",
                 "_scan", "_spos", "_wire")

    def __init__(self, max_message_bytes: int, scanner: ModuleType) -> None:
        super().__init__(max_message_bytes)
        self._head, self._scan = scanner.wire_head, scanner.wire_scan
        # msgpack's bound on an array's length is the buffer limit (max_array_len): a batch of more than half
        # of it could not fit anyway, and is left to msgpack, which gives its own error
        self._half = max_message_bytes // 2
        self._wire = True  # the scanner reads the current message (False: the Unpacker does)
        self._buf = bytearray()  # the stream's bytes from offset _base (the current message's start)
        self._base = 0
        self._left = -1  # items left to read of the current message; -1: its header is not read yet
        self._elems = 0  # elements left to read of the current item
        self._spos = self._at = self._msgid = self._n = 0
        self._fresh: memoryview | None = None  # the bytes just fed to the Unpacker
        self._back: memoryview | None = None  # the bytes after a message the Unpacker hands back

    def _take(self, chunk: memoryview, out: list[Item]) -> bool:
        part: memoryview | None = chunk
        if self._wire and not self._buf and self._head(chunk, 0, self._half) == -1:
            # At a boundary with nothing buffered, a message the scanner does not read (a check, a ping) goes
            # to msgpack as it came, without a copy (the usual case of a client that sends no batches).
            self._decline()
            part = self._unpack(chunk, out)
        # A loop, not a recursion: a chunk may alternate between the two readers message by message.
        while part is not None and not self.broken:
            part = self._read(part, out) if self._wire else self._unpack(part, out)
        return not self.broken

    def _read(self, chunk: memoryview, out: list[Item]) -> memoryview | None:
        """The scanner's turn: complete check_batch messages become WireBatches; returns the bytes of a
        message it does not read (from its first byte on: the Unpacker's), None when all are taken."""
        buf = self._buf
        buf += chunk
        while buf:
            if self._left < 0:
                head = self._head(buf, 0, self._half)
                if type(head) is int:
                    if head == 0:
                        return None
                    self._decline()
                    return self._taken()
                self._msgid, self._n, self._at = head
                self._spos, self._left, self._elems = self._at, self._n, 0
            self._spos, self._left, self._elems = self._scan(buf, self._spos, self._left, self._elems)
            if self._left < 0:
                self._decline()
                return self._taken()
            if self._left or self._elems:
                return None
            end = self._spos
            out.append(WireBatch(self._msgid, self._n, bytes(memoryview(buf)[:end]), self._at))
            del buf[:end]
            self._base = self._end = self._base + end
            self._left = -1
        return None

    def _decline(self) -> None:
        """The current message is not one the scanner reads: msgpack decodes it, from its first byte."""
        self._wire = False
        self._left = -1
        # The unpacker stands at a message boundary with nothing buffered: its offset tell() is _base.
        self._shift = self._base - self._unpacker.tell()

    def _taken(self) -> memoryview:
        """The buffered bytes, handed on (to the Unpacker)."""
        data = memoryview(bytes(self._buf))
        self._buf.clear()
        return data

    def _unpack(self, chunk: memoryview, out: list[Item]) -> memoryview | None:
        """The Unpacker's turn; returns the bytes it hands back to the scanner (see _handover)."""
        self._fresh, self._back = chunk, None
        self._unpacker.feed(chunk)
        self._drain(out)
        self._fresh = None
        if self._end == self._fed:  # a message boundary with nothing buffered: the scanner reads on
            self._wire, self._base = True, self._end
        return self._back

    def _handover(self) -> bool:
        # After a message msgpack decoded: when what follows it was all fed just now (the scanner can have it)
        # and may be a check_batch, the scanner reads it, and a fresh Unpacker stands at the next boundary.
        rest, fresh = self._fed - self._end, self._fresh
        if fresh is None or not 0 < rest <= len(fresh) or self._head(fresh, len(fresh) - rest, self._half) == -1:
            return False
        self._back = fresh[len(fresh) - rest :]
        self._unpacker = new_unpacker(self._limit)
        self._shift = self._end
        self._wire, self._base = True, self._end
        return True


def make_decoder(max_message_bytes: int) -> RpcDecoder:
    """The connection's decoder: a :class:`WireDecoder` with the accelerator, else the plain one."""
    scanner = fastpath.wire_scanner()
    if scanner is None or max_message_bytes < MIN_WIRE_LIMIT:
        return RpcDecoder(max_message_bytes)
    return WireDecoder(max_message_bytes, scanner)
