"""The ceiling of the msgpack RPC benchmark: a bare MessagePack-RPC echo server on uvloop.

Same framing as the service (asyncio Protocol, msgpack Unpacker, one reused Packer, answers written once
per received chunk) but no decision: ``check_batch`` answers its list of queries back, ``check`` its
params, anything else ``"pong"``. ``python benchmarks/echo_server.py HOST PORT`` prints ``ready PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgpack
import uvloop


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.unpacker = msgpack.Unpacker(max_buffer_size=1 << 20)
        self.packer = msgpack.Packer()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        out = []
        pack = self.packer.pack
        for msg in self.unpacker:
            params = msg[3]
            result = params[0] if msg[2] == "check_batch" else params if msg[2] == "check" else "pong"
            out.append(pack([1, msg[1], None, result]))
        if out:
            self.transport.write(b"".join(out))


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, backlog=1024)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
