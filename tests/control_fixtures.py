"""Shared helpers of the control-plane tests: a small registry with one device per situation, and an
engine + Control pair over it with a settable clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson

from eir.control import Control, ControlConfig
from eir.control_export import export_data
from eir.engine import Bundle, Engine
from eir.events import Event
from eir.index import Index
from eir.model import Decision
from eir.query import build_query
from eir.rules import RuleSet
from eir.snapshot import build_snapshot
from eir.state import MemoryState

DAY = 86_400
T0 = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())
CODE_KEY = b"test-code-key"
CODE = "123456"

# Devices (IMEI cores).
NEW = 35693803100011  # unowned import with activation code CODE
OWNED_1, OWNED_2 = 35693803100021, 35693803100022  # owned by OWNER, two slots
CLONED_1, CLONED_2 = 35693803100031, 35693803100032  # cloned, owned by OWNER
PRE = 35693803100041  # unowned pre-registry, users PRE_USER
BLOCKED = 35693803100051  # blocked (stolen), owned by OWNER
RECOVER = 35693803100061  # owned by EXPIRED since T0 - 400 days
REASSIGNED_DEV = 35693803100071  # owned by REASSIGNED (subscriber since after owner_since)
FREE_SAME_TAC = 35693803100099  # unregistered, same TAC as OWNED_*
FREE_TWIN_TAC = 86480000100001  # unregistered, another TAC of the same model (TAC table)
FREE_OTHER_TAC = 11111111100001  # unregistered, unknown TAC
STRANGER_DEV = 35693803100081  # owned by OTHER
UNOWNED_NOCODE = 35693803100091  # unowned import without a code

# Subscribers (E.164 ints).
OWNER = 989121000001
OTHER = 989121000002
BUYER = 989121000003
PRE_USER = 989121000004
EXPIRED = 989121000005
REASSIGNED = 989121000006
NEW_NUMBER = 989121000007
OPSIM = 989121000008


def n(msisdn: int) -> str:
    return str(msisdn)


def c(core: int) -> str:
    return f"{core:014d}"


def registry() -> list[dict[str, Any]]:
    since = dt.datetime.fromtimestamp(T0 - 400 * DAY, dt.UTC).isoformat()
    return [
        {"type": "device", "imeis": [c(NEW)], "model": "Samsung SM-J700F", "activation_code": CODE},
        {"type": "device", "imeis": [c(OWNED_1), c(OWNED_2)], "model": "Apple iPhone 8", "owner": n(OWNER),
         "owner_since": since},
        {"type": "device", "imeis": [c(CLONED_1), c(CLONED_2)], "owner": n(OWNER), "cloned": True},
        {"type": "device", "imeis": [c(PRE)], "origin": "pre_registry", "pre_registry_users": [n(PRE_USER)]},
        {"type": "device", "imeis": [c(BLOCKED)], "owner": n(OWNER), "block": "stolen"},
        {"type": "device", "imeis": [c(RECOVER)], "owner": n(EXPIRED), "owner_since": since},
        {"type": "device", "imeis": [c(REASSIGNED_DEV)], "owner": n(REASSIGNED), "owner_since": since},
        {"type": "device", "imeis": [c(STRANGER_DEV)], "owner": n(OTHER)},
        {"type": "device", "imeis": [c(UNOWNED_NOCODE)]},
        {"type": "subscriber", "msisdn": n(OWNER), "since": "2019-05-01T00:00:00Z"},
        {"type": "subscriber", "msisdn": n(OTHER)},
        {"type": "subscriber", "msisdn": n(BUYER)},
        {"type": "subscriber", "msisdn": n(EXPIRED), "expired": True},
        {"type": "subscriber", "msisdn": n(REASSIGNED), "since": "2026-01-01T00:00:00Z"},
        {"type": "subscriber", "msisdn": n(NEW_NUMBER)},
        {"type": "tac", "tac": "35693803", "brand": "Apple", "model": "iPhone 8"},
        {"type": "tac", "tac": "86480000", "brand": "Apple", "model": "iPhone 8"},
    ]


def build(tmp: Path, records: list[dict[str, Any]], name: str = "reg") -> Path:
    src = tmp / f"{name}.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    out = tmp / f"{name}.eirsnap"
    build_snapshot([src], out, skip_invalid=False)
    return out


class Clock:
    """A settable clock (epoch seconds)."""

    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class Plane:
    """An engine over an index with a state, its Control, the events emitted and a clock."""

    def __init__(self, index: Index, rules: RuleSet, state: MemoryState | None = None,
                 config: ControlConfig | None = None) -> None:
        self.events: list[Event] = []
        self.state = state if state is not None else MemoryState()
        self.engine = Engine(Bundle.of(index, rules), self.state, (self.events.append,))
        self.clock = Clock()
        self.control = Control(self.engine, clock=self.clock,
                               config=config or ControlConfig(code_key=CODE_KEY))

    @property
    def index(self) -> Index:
        return self.engine.bundle.index

    def attach(self, imei: int, msisdn: int, slot: int = 1, t: int | None = None) -> Decision:
        b = self.engine.bundle
        q = build_query(b.index, b.rules, self.clock.t if t is None else t, c(imei), n(msisdn), slot, None)
        return self.engine.check(q)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def last(self, type_: str) -> Event:
        return [e for e in self.events if e.type == type_][-1]


def canonical(index: Index) -> dict[str, object]:
    """Everything the control plane can change, in stable keys (for equality of two indexes)."""
    data = export_data(index)
    cols = {name: list(col) for name, col in data.columns.items()}
    return {"columns": cols, "reasons": data.strings["reasons"], "transfers": data.transfers}
