"""Shared fixtures: small registries built through the real snapshot path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from eir.engine import Bundle, Engine
from eir.events import Event
from eir.index import Index
from eir.rules import RuleSet, compile_rules, load_rules
from eir.snapshot import build_snapshot
from eir.state import MemoryState

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
DAY = 86_400
T0 = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write registry records as JSON Lines."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


@pytest.fixture
def make_index(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Index]:
    """Build a snapshot from registry records and load it."""
    counter = [0]

    def make(records: list[dict[str, Any]]) -> Index:
        counter[0] += 1
        src = write_jsonl(tmp_path / f"registry{counter[0]}.jsonl", records)
        out = tmp_path / f"snap{counter[0]}.eirsnap"
        build_snapshot([src], out, skip_invalid=False)
        return Index.from_snapshot(out)

    return make


@pytest.fixture(scope="session")
def default_rules() -> RuleSet:
    return load_rules(RULES_DIR / "default.toml")


@pytest.fixture(scope="session")
def strict_rules() -> RuleSet:
    return load_rules(RULES_DIR / "strict.toml")


def rules_with(base: RuleSet, **overrides: dict[str, Any]) -> RuleSet:
    """A rule set equal to ``base`` but for some keys: ``rules_with(r, clone={"grace_days": 5})``."""
    doc: dict[str, Any] = {t: dict(v) for t, v in base.raw.items()}
    doc["policy"]["home_mcc"] = list(doc["policy"]["home_mcc"])
    for table, keys in overrides.items():
        doc[table].update(keys)
    doc["messages"] = {lang: dict(m) for lang, m in base.messages.items()}
    return compile_rules(doc, source="test")


class Harness:
    """An engine over an index with an in-memory state, collecting events."""

    def __init__(self, index: Index, rules: RuleSet) -> None:
        self.events: list[Event] = []
        self.state = MemoryState()
        self.engine = Engine(Bundle.of(index, rules), self.state, (self.events.append,))

    def check(self, t: int, imei: str, msisdn: str | None, slot: int | None = None, imsi: str | None = None):  # type: ignore[no-untyped-def]
        from eir.query import build_query

        b = self.engine.bundle
        return self.engine.check(build_query(b.index, b.rules, t, imei, msisdn, slot, imsi))

    def types(self) -> list[str]:
        return [e.type for e in self.events]
