"""Snapshot files: build, round trip, integrity checks, atomic writes, activation codes, CLI."""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from eir.cli.snapshot import snapshot as snapshot_cli
from eir.identifiers import NumberingPlan, imei15, parse_imei, parse_msisdn
from eir.index import CLONED, HAS_ACTIVATION_CODE, ORIGIN_MASK, ORIGINS, Index
from eir.registry import COLUMNS, ImeiPolicy, RegistryBuilder, RegistryError, activation_code_hash, parse_time
from eir.snapshot import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    SnapshotError,
    build_snapshot,
    decode_snapshot,
    encode_snapshot,
    read_snapshot,
)
from tests.strategies import registry_records

KEY = b"test-code-key"
POLICY = ImeiPolicy()
PLAN = NumberingPlan()

REGISTRY: list[dict[str, Any]] = [
    {"type": "tac", "tac": "35693803", "brand": "Samsung", "model": "SM-J700F"},
    {"type": "device", "imeis": ["356938035643809", "356938035643817"], "model": "Samsung SM-J700F",
     "origin": "import", "owner": "09121234567", "owner_since": "2024-03-01T00:00:00Z", "cloned": True,
     "operator_sims": {"2": "09121234568"}, "pre_registry_users": [], "block": None},
    {"type": "device", "imeis": ["49015420323751"], "origin": "pre_registry", "pre_registry_users": ["09351111111"]},
    {"type": "device", "imeis": ["35693803000001"], "origin": "traveler", "activation_code": "482913"},
    {"type": "device", "imeis": ["35693803000002"], "origin": "repair", "block": "stolen"},
    {"type": "subscriber", "msisdn": "989121234567", "imsi": "432111234567890", "national_id": "0012345678",
     "since": "2019-05-01T00:00:00Z"},
    {"type": "subscriber", "msisdn": "09121234568", "expired": True},
    {"type": "blacklist", "imei": "35693803564380", "reason": "stolen"},
    {"type": "blacklist", "imei": "35693803999999", "reason": "court_order"},
    {"type": "traveler_entry", "msisdn": "989121234567", "entered": "2026-11-01T08:00:00Z"},
    {"type": "traveler_entry", "national_id": "0012345678", "entered": 1_790_000_000},
]  # fmt: skip


def jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EIR_CODE_KEY", KEY.decode())
    out = tmp_path / "registry.eirsnap"
    build_snapshot([jsonl(tmp_path / "registry.jsonl", REGISTRY)], out, skip_invalid=False)
    return out


def test_build_counts(built: Path) -> None:
    counts = read_snapshot(built).meta.counts
    expected = {
        "devices": 4, "imeis": 5, "owned": 1, "cloned": 1, "blocked_devices": 1, "blacklisted_imeis": 2,
        "blacklisted_unregistered": 1, "origin_import": 1, "origin_pre_registry": 1, "origin_traveler": 1,
        "origin_repair": 1, "pre_registry": 1, "unowned_pre_registry": 1, "not_activated_import": 0,
        "not_activated_traveler": 1, "not_activated_repair": 1, "operator_sims": 1,
        "devices_with_operator_sims": 1, "pre_registry_users": 1, "activation_codes": 1, "models": 2,
        "subscribers": 2, "subscribers_with_imsi": 1, "subscribers_with_national_id": 1,
        "subscribers_expired": 1, "traveler_entries": 2, "tacs": 1,
    }  # fmt: skip
    assert dict(counts) == expected


def test_meta(built: Path) -> None:
    meta = read_snapshot(built).meta
    raw = built.read_bytes()
    assert meta.format_version == FORMAT_VERSION == 1
    assert meta.checksum == hashlib.sha256(raw[HEADER_SIZE:]).hexdigest()
    assert meta.size == len(raw) and meta.skipped == 0
    assert meta.sources == (str(built.parent / "registry.jsonl"),)
    assert abs(meta.created - __import__("time").time()) < 60


def test_activation_codes_are_only_stored_hashed(built: Path) -> None:
    raw = built.read_bytes()
    assert b"482913" not in raw
    index = Index.from_snapshot(built)
    dev = (index.lookup(35693803000001) >> 1) - 1
    assert index.flags[dev] & HAS_ACTIVATION_CODE
    assert index.code_hash(dev) == activation_code_hash(KEY, 35693803000001, "482913")
    assert index.code_hash(0) is None


def test_build_fails_without_code_key_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EIR_CODE_KEY", raising=False)
    out = tmp_path / "s.eirsnap"
    with pytest.raises(RegistryError, match="EIR_CODE_KEY"):
        build_snapshot([jsonl(tmp_path / "r.jsonl", REGISTRY)], out, skip_invalid=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]
    monkeypatch.setenv("EIR_CODE_KEY", "")  # empty counts as unset
    with pytest.raises(RegistryError, match="EIR_CODE_KEY"):
        build_snapshot([tmp_path / "r.jsonl"], out, skip_invalid=True)


def test_failed_build_leaves_no_file_and_keeps_the_old_one(built: Path, tmp_path: Path) -> None:
    before = built.read_bytes()
    bad = jsonl(tmp_path / "bad.jsonl", [{"type": "device", "imeis": ["1"]}])
    with pytest.raises(RegistryError):
        build_snapshot([bad], built, skip_invalid=False)
    assert built.read_bytes() == before
    fresh = tmp_path / "fresh.eirsnap"
    with pytest.raises(RegistryError):
        build_snapshot([bad], fresh, skip_invalid=False)
    assert not fresh.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        build_snapshot([jsonl(tmp_path / "r.jsonl", REGISTRY[:3])], tmp_path / "s.eirsnap", skip_invalid=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


# --- integrity: every damaged file is refused before anything is unpacked ----------------------------


def _refuse(data: bytes, match: str) -> None:
    with pytest.raises(SnapshotError, match=match):
        decode_snapshot(data)
    with pytest.raises(SnapshotError, match=match):
        Index.from_bytes(data)


def test_truncated_files_are_refused(built: Path) -> None:
    raw = built.read_bytes()
    for cut in (0, 7, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, len(raw) // 2, len(raw) - 1):
        _refuse(raw[:cut], "truncated")


def test_trailing_bytes_are_refused(built: Path) -> None:
    _refuse(built.read_bytes() + b"\0", "unexpected bytes after the body")


def test_wrong_magic_and_version(built: Path) -> None:
    raw = built.read_bytes()
    _refuse(b"PK\x03\x04" + raw[4:], "not an EIR snapshot")
    _refuse(raw[:8] + struct.pack("<H", 2) + raw[10:], "format version 2 is not supported")
    _refuse(raw[:8] + struct.pack("<H", 0) + raw[10:], "format version 0")


@pytest.mark.parametrize("where", ["header-length", "digest", "body-start", "body-middle", "body-end"])
def test_flipped_byte_is_refused(built: Path, where: str) -> None:
    raw = bytearray(built.read_bytes())
    pos = {"header-length": 10, "digest": 20, "body-start": HEADER_SIZE, "body-middle": len(raw) // 2,
           "body-end": len(raw) - 1}[where]  # fmt: skip
    raw[pos] ^= 0x40
    _refuse(bytes(raw), "truncated|unexpected bytes|checksum mismatch")


def test_checksummed_but_malformed_body_is_refused(built: Path) -> None:
    def forge(tree: Any) -> bytes:
        body = msgpack.packb(tree, use_bin_type=True)
        return struct.pack("<8sHQ32s", MAGIC, 1, len(body), hashlib.sha256(body).digest()) + body

    good = msgpack.unpackb(built.read_bytes()[HEADER_SIZE:])
    _refuse(forge([1, 2]), "malformed body")
    _refuse(forge({**good, "columns": {}}), "malformed body")
    cols = dict(good["columns"])
    cols["dev_owner"] = ["i64", cols["dev_owner"][1][:-8]]
    _refuse(forge({**good, "columns": cols}), "differ in length")
    cols = dict(good["columns"])
    cols["dev_flags"] = ["u32", cols["dev_flags"][1]]
    _refuse(forge({**good, "columns": cols}), "expected u8")
    _refuse(forge({**good, "strings": {**good["strings"], "models": []}}), "outside string table models")
    assert decode_snapshot(forge(good)).meta.counts == read_snapshot(built).meta.counts


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="cannot read"):
        read_snapshot(tmp_path / "absent.eirsnap")
    with pytest.raises(SnapshotError, match="cannot read"):
        read_snapshot(tmp_path)


def test_encoding_is_deterministic(built: Path) -> None:
    data = read_snapshot(built).data
    one = encode_snapshot(data, created=1_700_000_000, sources=["a.jsonl"])
    assert one == encode_snapshot(data, created=1_700_000_000, sources=["a.jsonl"])
    again = decode_snapshot(one)
    assert {k: list(v) for k, v in again.data.columns.items()} == {k: list(v) for k, v in data.columns.items()}
    assert again.data.strings == data.strings and again.meta.created == 1_700_000_000


# --- round trip: every record of a random registry reads back equal ----------------------------------


def _time(value: Any) -> int:
    return 0 if value is None else parse_time(value)


def _msisdn(text: str) -> int:
    return parse_msisdn(text, PLAN)[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(registry_records())
def test_random_registries_round_trip(records: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        builder = RegistryBuilder(KEY)
        builder.read(jsonl(Path(tmp) / "r.jsonl", records))
        data = builder.finish()
    assert builder.errors == []
    index = Index.from_bytes(encode_snapshot(data, created=1, sources=["r.jsonl"]))
    devices = [r for r in records if r["type"] == "device"]
    blacklist = {parse_imei(r["imei"], POLICY): r["reason"] for r in records if r["type"] == "blacklist"}
    assert index.n_devices == len(devices)
    seen: set[int] = set()
    for rec in devices:
        cores = tuple(parse_imei(i, POLICY) for i in rec["imeis"])
        dev = (index.lookup(cores[0]) >> 1) - 1
        assert dev >= 0 and dev not in seen
        seen.add(dev)
        assert index.device_imeis(dev) == cores and index.device_key(dev) == cores[0]
        for core in cores:
            assert index.lookup(core) == ((dev + 1) << 1) | (core in blacklist)
        assert index.model(dev) == rec.get("model", "")
        assert index.origin(dev) == (rec.get("origin") or "import")
        assert ORIGINS[index.flags[dev] & ORIGIN_MASK] == index.origin(dev)
        assert bool(index.flags[dev] & CLONED) == rec.get("cloned", False)
        assert index.owner[dev] == (_msisdn(rec["owner"]) if rec.get("owner") else 0)
        assert index.owner_since[dev] == _time(rec.get("owner_since"))
        sims = {int(s): _msisdn(m) for s, m in rec.get("operator_sims", {}).items()}
        assert index.operator_sims(dev) == sims
        for slot in range(0, 6):
            assert index.operator_sim(dev, slot) == sims.get(slot, 0)
        users = frozenset(_msisdn(m) for m in rec.get("pre_registry_users", []))
        assert index.pre_registry_users(dev) == users
        assert all(index.is_pre_registry_user(dev, u) for u in users)
        assert index.block_reason(dev) == rec.get("block")
        code = rec.get("activation_code")
        assert index.code_hash(dev) == (None if code is None else activation_code_hash(KEY, cores[0], str(code)))
    for core, reason in blacklist.items():
        assert index.lookup(core) & 1 and index.blacklist_reason(core) == reason
    subscribers = [r for r in records if r["type"] == "subscriber"]
    assert index.counts()["subscribers"] == len(subscribers)
    for rec in subscribers:
        msisdn = _msisdn(rec["msisdn"])
        sub = index.subscriber(msisdn)
        assert sub is not None
        assert (sub.msisdn, sub.imsi, sub.national_id, sub.since, sub.expired) == (
            msisdn, int(rec["imsi"]) if "imsi" in rec else None, rec.get("national_id"),
            _time(rec.get("since")) or None, rec.get("expired", False),
        )  # fmt: skip
        assert index.national_id(msisdn) == rec.get("national_id")
        if "imsi" in rec:
            assert index.msisdn_for_imsi(int(rec["imsi"])) == msisdn
    for rec in records:
        if rec["type"] == "traveler_entry":
            t = _time(rec["entered"])
            msisdn = _msisdn(rec["msisdn"]) if "msisdn" in rec else 0
            assert index.has_traveler_entry(msisdn, rec.get("national_id"), t, t)
        if rec["type"] == "tac":
            assert index.tac_info(int(rec["tac"])) == (rec["brand"], rec["model"])
    assert index.counts()["traveler_entries"] == sum(r["type"] == "traveler_entry" for r in records)


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_build_and_inspect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIR_CODE_KEY", "k")
    src, out = jsonl(tmp_path / "r.jsonl", REGISTRY), tmp_path / "s.eirsnap"
    result = CliRunner().invoke(snapshot_cli, ["build", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 devices, 5 IMEIs, 2 subscribers" in result.stdout and " s" in result.stdout
    result = CliRunner().invoke(snapshot_cli, ["inspect", str(out)])
    assert result.exit_code == 0
    assert "format version  1" in result.stdout and "sha256:" in result.stdout
    assert "blacklisted_unregistered" in result.stdout
    result = CliRunner().invoke(snapshot_cli, ["inspect", str(out), "--json"])
    doc = orjson.loads(result.stdout)
    assert doc["format_version"] == 1 and doc["counts"]["devices"] == 4 and doc["created_iso"].endswith("Z")
    assert doc["checksum_sha256"] == read_snapshot(out).meta.checksum


def test_cli_build_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIR_CODE_KEY", "k")
    src = jsonl(tmp_path / "r.jsonl", [*REGISTRY, {"type": "device", "imeis": ["1234"]}])
    out = tmp_path / "s.eirsnap"
    result = CliRunner().invoke(snapshot_cli, ["build", str(src), "-o", str(out)])
    assert result.exit_code == 1 and not out.exists()
    assert f"{src}:12: device.imeis[0]: malformed IMEI '1234'" in result.stderr
    assert "1 invalid record(s); no snapshot written" in result.stderr and result.stdout == ""
    result = CliRunner().invoke(snapshot_cli, ["build", str(src), "-o", str(out), "--skip-invalid"])
    assert result.exit_code == 0 and out.exists()
    assert "skipped 1 invalid record(s)" in result.stderr and "4 devices" in result.stdout


def test_cli_usage_and_corrupt_snapshot(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "r.jsonl", REGISTRY[:2])
    assert CliRunner().invoke(snapshot_cli, ["build", str(src)]).exit_code == 2  # no -o
    assert CliRunner().invoke(snapshot_cli, ["build", str(tmp_path / "x.jsonl"), "-o", "o"]).exit_code == 2
    bad = tmp_path / "bad.eirsnap"
    bad.write_bytes(MAGIC + b"\1\0" + b"\0" * 30)
    result = CliRunner().invoke(snapshot_cli, ["inspect", str(bad)])
    assert result.exit_code == 1 and "error:" in result.stderr and "truncated" in result.stderr
    result = CliRunner().invoke(snapshot_cli, ["build", str(src), "-o", str(tmp_path / "no" / "dir" / "s")])
    assert result.exit_code == 1 and "cannot write" in result.stderr


def test_columns_schema_is_fixed() -> None:
    # Changing the column set or a width changes the file format: bump FORMAT_VERSION and the docs.
    assert len(COLUMNS) == 32 and set(COLUMNS.values()) == {"B", "I", "q"}
    assert imei15(35693803564380) == "356938035643809"


def test_index_loads_from_any_buffer_and_refuses_a_damaged_file(built: Path, tmp_path: Path) -> None:
    raw = built.read_bytes()
    for buf in (raw, bytearray(raw), memoryview(raw)):
        assert Index.from_bytes(buf).n_devices == 4
    assert Index.from_snapshot(str(built)).meta.checksum == hashlib.sha256(raw[HEADER_SIZE:]).hexdigest()
    cut = tmp_path / "cut.eirsnap"
    cut.write_bytes(raw[:-10])
    with pytest.raises(SnapshotError, match=f"{cut}: truncated: body has"):
        Index.from_snapshot(cut)
