"""The in-memory Index: IMEI codes, device data, subscribers, traveler entries."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eir.identifiers import MALFORMED, imei15
from eir.index import (
    BLOCKED,
    CLONED,
    HAS_ACTIVATION_CODE,
    HAS_OPERATOR_SIMS,
    HAS_PRE_REGISTRY_USERS,
    ORIGIN_MASK,
    Index,
    Subscriber,
    imei_key,
)
from eir.registry import RegistryBuilder
from eir.snapshot import build_snapshot, encode_snapshot
from tests.strategies import imei_cores

T_ENTRY = 1_793_520_000  # 2026-11-01T08:00:00Z
REGISTRY: list[dict[str, Any]] = [
    {"type": "tac", "tac": "35693803", "brand": "Samsung", "model": "SM-J700F"},
    {"type": "device", "imeis": ["356938035643809", "356938035643817"], "model": "Samsung SM-J700F",
     "owner": "09121234567", "owner_since": "2024-03-01T00:00:00Z", "cloned": True,
     "operator_sims": {"2": "09121234568"}},
    {"type": "device", "imeis": ["49015420323751"], "origin": "pre_registry",
     "pre_registry_users": ["09351111111", "09352222222"]},
    {"type": "device", "imeis": ["01234567000010", "012345670000202", "0123456700003001"], "origin": "repair",
     "block": "court_order"},
    {"type": "device", "imeis": ["35693803000001"], "origin": "traveler", "activation_code": "482913"},
    {"type": "subscriber", "msisdn": "989121234567", "imsi": "432111234567890", "national_id": "0012345678",
     "since": "2019-05-01T00:00:00Z"},
    {"type": "subscriber", "msisdn": "09121234568", "expired": True},
    {"type": "subscriber", "msisdn": "+447700900123", "imsi": "234150000000001", "national_id": "000000000000000001"},
    {"type": "blacklist", "imei": "35693803564381", "reason": "stolen"},
    {"type": "blacklist", "imei": "35693803999999", "reason": "lost"},
    {"type": "traveler_entry", "msisdn": "09125555555", "entered": "2026-11-01T08:00:00Z"},
    {"type": "traveler_entry", "national_id": "0099", "entered": T_ENTRY + 86_400},
    {"type": "traveler_entry", "msisdn": "09126666666", "national_id": "0777", "entered": T_ENTRY},
]  # fmt: skip


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    d = tmp_path_factory.mktemp("index")
    src = d / "registry.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in REGISTRY))
    mp = pytest.MonkeyPatch()
    mp.setenv("EIR_CODE_KEY", "k")
    try:
        build_snapshot([src], d / "s.eirsnap", skip_invalid=False)
    finally:
        mp.undo()
    return Index.from_snapshot(d / "s.eirsnap")


def dev_of(index: Index, core: int) -> int:
    return (index.lookup(core) >> 1) - 1


def test_lookup_codes(index: Index) -> None:
    assert index.lookup(35693803564380) == 1 << 1  # device 0, not blacklisted
    assert index.lookup(35693803564381) == (1 << 1) | 1  # device 0, blacklisted
    assert index.lookup(35693803999999) == 1  # blacklisted, no device: (1 >> 1) - 1 == -1
    assert (index.lookup(35693803999999) >> 1) - 1 == -1
    assert index.lookup(49015420323751) == 2 << 1
    for unknown in (35693803564382, 0, 1, 10**14 - 1, MALFORMED, -2):
        assert index.lookup(unknown) == 0
    assert index.n_devices == 4 and index.n_imeis == 7


def test_device_columns(index: Index) -> None:
    d0, d1, d2, d3 = (dev_of(index, c) for c in (35693803564380, 49015420323751, 1234567000010, 35693803000001))
    assert (d0, d1, d2, d3) == (0, 1, 2, 3)
    assert index.device_imeis(d0) == (35693803564380, 35693803564381)
    assert index.device_imeis(d2) == (1234567000010, 1234567000020, 1234567000030)  # leading-zero TAC
    assert index.device_key(d2) == 1234567000010 and dev_of(index, 1234567000030) == d2
    assert index.model(d0) == "Samsung SM-J700F" and index.model(d1) == ""
    assert [index.origin(d) for d in range(4)] == ["import", "pre_registry", "repair", "traveler"]
    assert index.flags[d0] == CLONED | HAS_OPERATOR_SIMS
    assert index.flags[d1] == 1 | HAS_PRE_REGISTRY_USERS
    assert index.flags[d2] == 3 | BLOCKED and index.flags[d2] & ORIGIN_MASK == 3
    assert index.flags[d3] == 2 | HAS_ACTIVATION_CODE
    assert index.owner[d0] == 989121234567 and index.owner[d1] == 0
    assert index.owner_since[d0] == 1_709_251_200 and index.owner_since[d1] == 0


def test_rare_device_data(index: Index) -> None:
    assert index.operator_sim(0, 2) == 989121234568
    assert index.operator_sim(0, 1) == index.operator_sim(0, 3) == index.operator_sim(1, 2) == 0
    assert index.operator_sims(0) == {2: 989121234568} and index.operator_sims(1) == {}
    assert index.pre_registry_users(1) == frozenset({989351111111, 989352222222})
    assert index.is_pre_registry_user(1, 989352222222) and not index.is_pre_registry_user(0, 989352222222)
    assert index.pre_registry_users(0) == frozenset()
    assert index.block_reason(2) == "court_order" and index.block_reason(0) is None
    assert index.blacklist_reason(35693803564381) == "stolen"
    assert index.blacklist_reason(35693803999999) == "lost"
    assert index.blacklist_reason(35693803564380) is None
    code = index.code_hash(3)
    assert code is not None and len(code) == 32 and index.code_hash(2) is None
    assert index.tac_info(35693803) == ("Samsung", "SM-J700F") and index.tac_info(49015420) is None


def test_subscribers(index: Index) -> None:
    assert index.msisdn_for_imsi(432111234567890) == 989121234567
    assert index.msisdn_for_imsi(234150000000001) == 447700900123
    assert index.msisdn_for_imsi(432111234567891) == 0
    assert index.national_id(989121234567) == "0012345678"
    assert index.national_id(447700900123) == "000000000000000001"
    assert index.national_id(989121234568) is None and index.national_id(989120000000) is None
    assert index.subscriber(989121234567) == Subscriber(
        989121234567, 432111234567890, "0012345678", 1_556_668_800, False
    )
    assert index.subscriber(989121234568) == Subscriber(989121234568, None, None, None, True)
    assert index.subscriber(1) is None


def test_traveler_entries(index: Index) -> None:
    # By MSISDN; the window is inclusive at both ends.
    assert index.has_traveler_entry(989125555555, None, T_ENTRY, T_ENTRY)
    assert index.has_traveler_entry(989125555555, None, T_ENTRY - 30 * 86_400, T_ENTRY)
    assert not index.has_traveler_entry(989125555555, None, T_ENTRY + 1, T_ENTRY + 86_400)
    assert not index.has_traveler_entry(989125555555, None, T_ENTRY - 86_400, T_ENTRY - 1)
    # By national id (leading zeros matter: "099" is another person).
    assert index.has_traveler_entry(0, "0099", T_ENTRY, T_ENTRY + 86_400)
    assert index.has_traveler_entry(989120000000, "0099", T_ENTRY, T_ENTRY + 86_400)
    assert not index.has_traveler_entry(0, "099", T_ENTRY, T_ENTRY + 86_400)
    assert not index.has_traveler_entry(0, "0099", T_ENTRY, T_ENTRY + 86_399)
    # An entry with both identities is found through either.
    assert index.has_traveler_entry(989126666666, None, T_ENTRY, T_ENTRY)
    assert index.has_traveler_entry(0, "0777", T_ENTRY, T_ENTRY)
    assert not index.has_traveler_entry(0, None, 0, 2**62) and not index.has_traveler_entry(0, "x1", 0, 2**62)


def test_index_is_read_only(index: Index) -> None:
    with pytest.raises(AttributeError, match="read-only"):
        index.n_devices = 5
    with pytest.raises(AttributeError):
        index.anything = 1  # type: ignore[attr-defined]


def test_counts_and_meta(index: Index) -> None:
    counts = index.counts()
    assert counts["devices"] == 4 and counts["imeis"] == 7 and counts["blacklisted_unregistered"] == 1
    counts["devices"] = 0  # a copy
    assert index.counts()["devices"] == 4 == index.meta.counts["devices"]
    assert index.meta.format_version == 1 and len(index.meta.checksum) == 64


def test_map_is_at_most_half_full(index: Index) -> None:
    capacity = index._map.capacity
    assert len(index._map) == 8 and capacity >= 16 and len(index._map) * 2 <= capacity


def test_imei_keys_avoid_reserved_values_at_the_boundaries() -> None:
    for core in (0, 1, 2, 10**13, 10**14 - 1, 35693803564380):
        assert imei_key(core) > 1
    assert len({imei_key(c) for c in range(10**14 - 5000, 10**14)}) == 5000


@settings(deadline=None)
@given(st.lists(imei_cores, min_size=1, max_size=40, unique=True))
def test_every_registered_imei_is_found(cores: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.jsonl"
        path.write_bytes(b"".join(orjson.dumps({"type": "device", "imeis": [imei15(c)]}) + b"\n" for c in cores))
        builder = RegistryBuilder(None)
        builder.read(path)
        index = Index.from_bytes(encode_snapshot(builder.finish(), created=1, sources=[]))
    assert [index.lookup(c) for c in cores] == [(d + 1) << 1 for d in range(len(cores))]
