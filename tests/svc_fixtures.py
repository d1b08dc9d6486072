"""Shared helpers of the service tests (tests/test_service.py, tests/transports/): registries with known
outcomes, configs on free ports, a fixed clock and a small msgpack RPC client."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import orjson

from eir.config import Endpoint, Limits, ServiceConfig
from eir.service import Service
from eir.snapshot import build_snapshot
from eir.transports.rpc_codec import encode_request

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES = ROOT / "rules" / "default.toml"
DAY = 86_400
T0 = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())

OWNED = "35693803564380"  # owned by OWNER: OWNER -> ALLOW OWNER, anyone else ALLOW REGISTERED
UNOWNED = "35693803564381"  # unowned import: first attach starts WARN ACTIVATION_GRACE (creates state)
BLOCKED = "35693803564382"  # device block: DENY BLACKLISTED
CLONED = "35693803564383"  # cloned, owner OWNER2: others WARN CLONE_GRACE
UNREGISTERED = "35693803564399"  # not in the registry: traveler allowance (creates state)
OWNER, OWNER_E164, OWNER_IMSI = "09121234567", "989121234567", "432111234567890"
OWNER2 = "09121234568"
OTHER, OTHER_E164 = "09127654321", "989127654321"


def registry(n_filler: int = 0, n_blocked_filler: int = 0) -> list[dict[str, Any]]:
    """The hand-made registry; ``n_filler`` extra owned devices, the first ``n_blocked_filler`` blocked."""
    recs: list[dict[str, Any]] = [
        {"type": "device", "imeis": [OWNED], "owner": OWNER, "origin": "import"},
        {"type": "device", "imeis": [UNOWNED], "owner": None, "origin": "import"},
        {"type": "device", "imeis": [BLOCKED], "owner": OWNER, "block": "stolen"},
        {"type": "device", "imeis": [CLONED], "owner": OWNER2, "cloned": True},
        {"type": "subscriber", "msisdn": OWNER_E164, "imsi": OWNER_IMSI, "national_id": "0012345678"},
        {"type": "subscriber", "msisdn": OTHER_E164, "imsi": "432111234567891", "national_id": "0012345679"},
    ]
    for i in range(n_filler):
        recs.append({"type": "device", "imeis": [f"{35000000000000 + i * 7:014d}"], "owner": f"0912{i:07d}",
                     "block": "stolen" if i < n_blocked_filler else None})
    return recs


def build(tmp: Path, name: str, records: list[dict[str, Any]]) -> Path:
    """Registry records -> snapshot file ``tmp/name.eirsnap``."""
    src = tmp / f"{name}.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    out = tmp / f"{name}.eirsnap"
    build_snapshot([src], out, skip_invalid=False)
    return out


def install(src: Path, dst: Path) -> None:
    """Put a new file in place the way an operator does: write beside, then rename over."""
    tmp = dst.with_suffix(".new")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def make_config(snapshot: Path, rules: Path = DEFAULT_RULES, token: str | None = None, **limits: Any) -> ServiceConfig:
    """A config listening on free loopback ports, with the state in memory."""
    return ServiceConfig(snapshot=snapshot, rules=rules, state=None, rpc=Endpoint("127.0.0.1", 0),
                         http=Endpoint("127.0.0.1", 0), limits=replace(Limits(), **limits), admin_token=token)


class FixedClock:
    """An injectable clock tests move by hand."""

    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


async def start(cfg: ServiceConfig, clock: FixedClock | None = None) -> Service:
    svc = Service(cfg, clock=clock or FixedClock())
    await svc.start()
    return svc


class RpcClient:
    """Minimal pipelining msgpack-rpc client over asyncio streams (``opened`` lists every client made,
    so a test can close them all: :func:`close_all`)."""

    opened: ClassVar[list[RpcClient]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.unpacker = msgpack.Unpacker(max_buffer_size=64 << 20)
        self.next_id = 0
        RpcClient.opened.append(self)

    @classmethod
    async def connect(cls, svc: Service) -> RpcClient:
        host, port = svc.rpc.address
        return cls(*await asyncio.open_connection(host, port))

    def send(self, method: str, params: Any) -> int:
        self.next_id += 1
        self.writer.write(encode_request(self.next_id, method, params))
        return self.next_id

    async def recv(self, timeout: float = 10.0) -> list[Any]:
        """The next response message (raises EOFError when the server closed)."""
        while True:
            for msg in self.unpacker:
                return msg  # type: ignore[no-any-return]
            data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
            if not data:
                raise EOFError("connection closed by the server")
            self.unpacker.feed(data)

    async def call(self, method: str, params: Any) -> tuple[Any, Any]:
        msgid = self.send(method, params)
        msg = await self.recv()
        assert msg[0] == 1 and msg[1] == msgid, msg
        return msg[2], msg[3]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def close_all() -> None:
    """Close every client opened so far (test teardown)."""
    while RpcClient.opened:
        await RpcClient.opened.pop().close()
