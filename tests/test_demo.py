"""Demo-data generator: determinism, exact sizes, well-formed records and every population present."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from eir.cli.demo import demo_data
from eir.demo import REGISTRY_ORDER, DemoMix, DemoSummary, generate_attaches, generate_registry, write_demo
from eir.demo_attaches import AttachBuckets
from eir.demo_tacs import TACS, ImeiAllocator, People, national_id_check_digit
from eir.identifiers import (
    MALFORMED,
    ImeiPolicy,
    NumberingPlan,
    luhn_check_digit,
    parse_imei,
    parse_msisdn,
)

DEVICES, ATTACHES, SEED = 2000, 10_000, 1
PLAN = NumberingPlan()
POLICY = ImeiPolicy()
DAY = 86_400
START, END = "2026-10-01T00:00:00Z", "2026-11-20T00:00:00Z"


@dataclass
class Demo:
    """The small demo data set, parsed."""

    summary: DemoSummary
    records: list[dict[str, object]]
    rows: list[dict[str, str]]
    by_type: dict[str, list[dict[str, object]]] = field(default_factory=lambda: defaultdict(list))
    imsi_to_msisdn: dict[str, int] = field(default_factory=dict)
    device_of: dict[int, dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rec in self.records:
            self.by_type[str(rec["type"])].append(rec)
        for sub in self.by_type["subscriber"]:
            self.imsi_to_msisdn[str(sub["imsi"])] = int(str(sub["msisdn"]))
        for dev in self.by_type["device"]:
            for imei in _strs(dev["imeis"]):
                self.device_of[parse_imei(imei, POLICY)] = dev

    def attaches(self) -> Iterator[tuple[int, int, int, bool, int]]:
        """``(epoch, imei core, msisdn or 0, is_home, slot)`` of the rows with a well-formed IMEI."""
        for row in self.rows:
            core = parse_imei(row["imei"], POLICY)
            if core == MALFORMED:
                continue
            if row["msisdn"]:
                msisdn, home = parse_msisdn(row["msisdn"], PLAN)
            else:
                msisdn = self.imsi_to_msisdn.get(row["imsi"], 0)
                home = row["imsi"].startswith("432")
            yield _epoch(row["time"]), core, msisdn, home, int(row["slot"] or 1)


def _strs(value: object) -> list[str]:
    assert isinstance(value, list)
    return [str(v) for v in value]


def _epoch(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _read(out: Path) -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    with open(out / "registry.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    with open(out / "attaches.csv", encoding="ascii", newline="") as f:
        rows = list(csv.DictReader(f))
    return records, rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    out = tmp_path_factory.mktemp("demo")
    summary = write_demo(out, DEVICES, ATTACHES, SEED)
    records, rows = _read(out)
    return Demo(summary, records, rows)


# -- building blocks ----------------------------------------------------------------------------------


def test_fast_luhn_matches_reference() -> None:
    alloc = ImeiAllocator(random.Random(5))
    rng = random.Random(6)
    for _ in range(2000):
        t, serial = rng.randrange(len(TACS)), rng.randrange(10**6)
        imei = alloc.imei15(t, serial)
        assert imei[:14] == f"{TACS[t].tac}{serial:06d}"
        assert int(imei[14]) == luhn_check_digit(imei[:14])


def test_national_ids_are_valid_and_unique() -> None:
    people = People(random.Random(3), DemoMix(), lambda rec: None)
    ids = [people.new_national_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for nid in ids:
        assert len(nid) == 10 and nid.isdigit()
        assert int(nid[9]) == national_id_check_digit(nid[:9])
    assert any(nid.startswith("0") for nid in ids)


def test_spilled_buckets_sort_like_memory(tmp_path: Path) -> None:
    rng = random.Random(9)
    rows = [(rng.randrange(50 * DAY), f"{rng.randrange(10**14):014d},98912{i:07d},1,\n") for i in range(3000)]
    outputs = []
    for spill_dir in (None, tmp_path):
        buckets = AttachBuckets(spill_dir, flush_at=7)
        for t, rest in rows:
            buckets.put(t, rest)
        path = tmp_path / f"out-{spill_dir is None}.csv"
        with open(path, "w", encoding="ascii", newline="") as f:
            buckets.write_csv(f)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-False.csv", "out-True.csv"]


def test_attach_time_outside_period_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        AttachBuckets().put(50 * DAY, "x,,,\n")


def test_mix_is_validated() -> None:
    with pytest.raises(ValueError, match="flagged_clones"):
        DemoMix(flagged_clones=1.5)
    with pytest.raises(ValueError, match="more than all devices"):
        DemoMix(pre_registry=0.6, non_owner_users=0.6)


# -- determinism and sizes ----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_demo(a, 400, 1500, 7)
    write_demo(b, 400, 1500, 7)
    write_demo(c, 400, 1500, 8)
    for name in ("registry.jsonl", "attaches.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
    assert sorted(p.name for p in a.iterdir()) == ["attaches.csv", "registry.jsonl"]  # no leftovers


def test_registry_does_not_depend_on_attach_count(tmp_path: Path) -> None:
    write_demo(tmp_path / "a", 300, 0, 4)
    write_demo(tmp_path / "b", 300, 5000, 4)
    assert (tmp_path / "a" / "registry.jsonl").read_bytes() == (tmp_path / "b" / "registry.jsonl").read_bytes()


@pytest.mark.parametrize(("devices", "attaches"), [(1, 0), (1, 5), (3, 17), (50, 1), (250, 1234)])
def test_exact_row_count(tmp_path: Path, devices: int, attaches: int) -> None:
    summary = write_demo(tmp_path, devices, attaches, 2)
    records, rows = _read(tmp_path)
    assert len(rows) == attaches == summary.attach_rows
    assert sum(summary.rows_by_population.values()) == attaches
    assert sum(r["type"] == "device" for r in records) == devices == summary.devices


def test_generators_match_the_files(demo: Demo) -> None:
    rows = [row._asdict() for row in generate_attaches(DEVICES, ATTACHES, SEED)]
    assert rows == demo.rows
    registry = list(generate_registry(DEVICES, SEED))
    assert sorted(map(json.dumps, registry)) == sorted(map(json.dumps, demo.records))


def test_generate_attaches_can_spill(tmp_path: Path) -> None:
    spilled = list(generate_attaches(200, 900, 3, spill_dir=tmp_path))
    assert spilled == list(generate_attaches(200, 900, 3))


# -- well-formed output -------------------------------------------------------------------------------


def test_attach_log_is_sorted_and_in_period(demo: Demo) -> None:
    times = [row["time"] for row in demo.rows]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < END
    assert all(len(t) == 20 and t.endswith("Z") for t in times)
    assert list(demo.rows[0]) == ["time", "imei", "msisdn", "slot", "imsi"]


def test_registry_records_are_known_and_grouped(demo: Demo) -> None:
    types = [str(r["type"]) for r in demo.records]
    assert set(types) == set(REGISTRY_ORDER)
    assert types == sorted(types, key=REGISTRY_ORDER.index)
    s = demo.summary
    assert len(demo.by_type["tac"]) == s.tac_records == len(TACS) >= 40
    assert len(demo.by_type["subscriber"]) == s.subscribers
    assert len(demo.by_type["blacklist"]) == s.blacklist_records
    assert len(demo.by_type["traveler_entry"]) == s.traveler_entries


def test_registry_imeis_are_valid_unique_and_match_their_tac(demo: Demo) -> None:
    models = {str(t["tac"]): str(t["model"]) for t in demo.by_type["tac"]}
    seen: set[str] = set()
    for dev in demo.by_type["device"]:
        imeis = _strs(dev["imeis"])
        assert 1 <= len(imeis) <= 2
        for imei in imeis:
            assert len(imei) == 15 and imei.isdigit()
            assert int(imei[14]) == luhn_check_digit(imei[:14])
            assert models[imei[:8]] == dev["model"]
            assert imei not in seen
            seen.add(imei)
        if len(imeis) == 2:  # consecutive serials, same TAC
            assert int(imeis[1][:14]) == int(imeis[0][:14]) + 1
    assert len(seen) == demo.summary.imeis
    dual = demo.summary.dual_imei_devices / demo.summary.devices
    assert 0.55 < dual < 0.65


def test_devices_follow_the_record_rules(demo: Demo) -> None:
    for dev in demo.by_type["device"]:
        assert dev["origin"] in {"import", "pre_registry", "traveler", "repair"}
        assert (dev["owner"] is None) == (dev["owner_since"] is None)
        if dev["owner"] is not None:
            assert str(dev["owner"]).startswith("09") and len(str(dev["owner"])) == 11
            assert str(dev["owner_since"]) < START
        if dev["pre_registry_users"]:
            assert dev["origin"] == "pre_registry" and dev["owner"] is None
        if dev["operator_sims"]:
            assert dev["cloned"] is True and set(dev["operator_sims"]) == {"2"}  # type: ignore[arg-type]
        assert "activation_code" not in dev  # opt-in only


def test_subscribers_are_unique_and_share_national_ids(demo: Demo) -> None:
    subs = demo.by_type["subscriber"]
    msisdns = [str(s["msisdn"]) for s in subs]
    imsis = [str(s["imsi"]) for s in subs]
    assert len(set(msisdns)) == len(msisdns) and len(set(imsis)) == len(imsis)
    assert all(m.startswith("989") and len(m) == 12 for m in msisdns)
    assert all(i.startswith("432") and len(i) == 15 for i in imsis)
    ids = Counter(str(s["national_id"]) for s in subs)
    assert all(len(n) == 10 and int(n[9]) == national_id_check_digit(n[:9]) for n in ids)
    assert any(n.startswith("0") for n in ids)
    assert sum(1 for c in ids.values() if c > 1) >= 20  # several SIMs under one national id
    expired = sum(1 for s in subs if s.get("expired") is True)
    assert expired == demo.summary.expired_subscribers > 0


def test_nearly_every_home_subscriber_has_a_record(demo: Demo) -> None:
    known = {int(str(s["msisdn"])) for s in demo.by_type["subscriber"]}
    home = {m for _, _, m, is_home, _ in demo.attaches() if is_home and m}
    assert len(home & known) / len(home) > 0.97


# -- identifier variety -------------------------------------------------------------------------------


def test_identifier_spellings(demo: Demo) -> None:
    imei_forms: Counter[str] = Counter()
    msisdn_forms: Counter[str] = Counter()
    for row in demo.rows:
        imei, ms = row["imei"], row["msisdn"]
        if imei.startswith("imeisv-"):
            imei_forms["imeisv-"] += 1
        elif imei.startswith("imei-"):
            imei_forms["imei-"] += 1
        elif imei.isdigit() and 14 <= len(imei) <= 16:
            imei_forms[str(len(imei))] += 1
        for prefix in ("0098", "+98", "09", "989", "9"):
            if ms.startswith(prefix) and (prefix != "9" or len(ms) == 10):
                msisdn_forms[prefix] += 1
                break
    assert set(imei_forms) == {"14", "15", "16", "imei-", "imeisv-"}
    assert imei_forms["15"] / len(demo.rows) > 0.75
    assert set(msisdn_forms) == {"0098", "+98", "09", "989", "9"}
    imsi_only = [r for r in demo.rows if not r["msisdn"]]
    assert 0.02 < len(imsi_only) / len(demo.rows) < 0.05 and len(imsi_only) == demo.summary.imsi_only_rows
    assert all(r["imsi"] for r in imsi_only)
    home_imsi_only = [r for r in imsi_only if r["imsi"].startswith("432")]
    assert home_imsi_only and all(r["imsi"] in demo.imsi_to_msisdn for r in home_imsi_only)
    assert any(r["slot"] == "" for r in demo.rows) and any(r["slot"] == "2" for r in demo.rows)
    for row in demo.rows:  # every MSISDN is one the engine can normalise
        if row["msisdn"]:
            parse_msisdn(row["msisdn"], PLAN)


def test_malformed_imeis(demo: Demo) -> None:
    bad = [r["imei"] for r in demo.rows if parse_imei(r["imei"], POLICY) == MALFORMED]
    assert len(bad) == demo.summary.malformed_rows == round(ATTACHES * 0.002)
    kinds = set()
    for imei in bad:
        if len(imei) == 15 and imei.isdigit() and set(imei) != {"0"}:
            kinds.add("luhn")
        elif set(imei) == {"0"}:
            kinds.add("zeros")
        elif imei.isdigit() and len(imei) < 14:
            kinds.add("short")
        elif any(ch.isalpha() for ch in imei):
            kinds.add("letters")
    assert kinds == {"luhn", "zeros", "short", "letters"}


def test_roamers(demo: Demo) -> None:
    codes, mccs = set(), set()
    for row in demo.rows:
        if row["msisdn"]:
            msisdn, home = parse_msisdn(row["msisdn"], PLAN)
            if not home:
                codes.add(next(cc for cc in ("44", "49", "90", "971", "964", "93") if str(msisdn).startswith(cc)))
        if row["imsi"] and not row["imsi"].startswith("432"):
            mccs.add(row["imsi"][:3])
    assert {"44", "49", "90", "971"} <= codes
    assert {"234", "262", "286", "424"} <= mccs


# -- populations: what the engine will see ------------------------------------------------------------


def test_every_population_is_present(demo: Demo) -> None:
    s = demo.summary
    assert all(n > 0 for n in s.populations.values()), s.populations
    assert all(n > 0 for n in s.rows_by_population.values()), s.rows_by_population
    assert s.operator_sims > 0 and s.traveler_entries > 0 and s.blacklist_records > 0


def _switchbacks(demo: Demo) -> dict[int, int]:
    """SPEC §4.1 on the data: the most switch-backs inside one 24 h window, per registered IMEI."""
    window: dict[int, list[tuple[int, int]]] = defaultdict(list)
    switches: dict[int, list[int]] = defaultdict(list)
    best: dict[int, int] = defaultdict(int)
    for t, core, msisdn, home, _ in demo.attaches():
        if core not in demo.device_of or not home or not msisdn:
            continue
        attaches = window[core] = [(u, m) for u, m in window[core] if u > t - DAY]
        if attaches and attaches[-1][1] != msisdn and any(m == msisdn for _, m in attaches):
            switches[core].append(t)
        switches[core] = [u for u in switches[core] if u > t - DAY]
        best[core] = max(best[core], len(switches[core]))
        attaches.append((t, msisdn))
    return best


def test_simultaneous_clones_are_detectable_and_lends_are_not(demo: Demo) -> None:
    best = _switchbacks(demo)
    detected = {core for core, n in best.items() if n >= 2}
    unflagged = {core for core in detected if demo.device_of[core]["cloned"] is False}
    assert unflagged, "no A B A B pattern on an unflagged device"
    assert all(demo.device_of[core]["owner"] is not None for core in unflagged)
    assert len(unflagged) == demo.summary.populations["simultaneous_clone"]
    lends = {core for core, n in best.items() if n == 1 and demo.device_of[core]["cloned"] is False}
    assert len(lends) >= demo.summary.populations["lend_and_return"] // 2


def test_flagged_clones_are_used_by_owner_and_others(demo: Demo) -> None:
    users: dict[int, set[int]] = defaultdict(set)
    operator_seen = False
    for _, core, msisdn, home, slot in demo.attaches():
        dev = demo.device_of.get(core)
        if dev is not None and dev["cloned"] and home and msisdn:
            users[core].add(msisdn)
            sims = dev["operator_sims"]
            assert isinstance(sims, dict)
            if slot == 2 and "2" in sims:
                operator_seen |= msisdn == parse_msisdn(str(sims["2"]), PLAN)[0]
    owned = [c for c in users if demo.device_of[c]["owner"] is not None]
    assert owned and any(len(users[c]) >= 3 for c in owned)
    assert any(demo.device_of[c]["origin"] == "pre_registry" for c in users)
    assert operator_seen


def test_pre_registry_devices_are_used_by_their_users_and_others(demo: Demo) -> None:
    listed = others = 0
    for _, core, msisdn, _, _ in demo.attaches():
        dev = demo.device_of.get(core)
        if dev is None or dev["origin"] != "pre_registry" or dev["owner"] is not None or not msisdn:
            continue
        users = {parse_msisdn(u, PLAN)[0] for u in _strs(dev["pre_registry_users"])}
        if msisdn in users:
            listed += 1
        else:
            others += 1
    assert listed > others > 0


def _spans(demo: Demo, keys: dict[int, object]) -> list[int]:
    first: dict[object, int] = {}
    last: dict[object, int] = {}
    for t, core, _, home, _ in demo.attaches():
        key = keys.get(core)
        if key is not None and home:
            first.setdefault(key, t)
            last[key] = t
    return [last[k] - first[k] for k in first]


def test_unactivated_devices_in_grace_and_overdue(demo: Demo) -> None:
    keys = {
        core: id(dev)
        for core, dev in demo.device_of.items()
        if dev["owner"] is None and dev["origin"] != "pre_registry"
    }
    spans = _spans(demo, keys)
    assert sum(s >= 30 * DAY for s in spans) >= 5  # WARN ACTIVATION_GRACE, then DENY NOT_ACTIVATED
    assert sum(s < 30 * DAY for s in spans) >= 5  # WARN only
    origins = {dev["origin"] for dev in demo.device_of.values() if dev["owner"] is None}
    assert origins == {"import", "traveler", "repair", "pre_registry"}


def test_travelers_and_unregistered_phones(demo: Demo) -> None:
    blacklisted = {parse_imei(str(b["imei"]), POLICY) for b in demo.by_type["blacklist"]}
    unregistered: dict[int, object] = {}
    users: dict[int, set[int]] = defaultdict(set)
    for _, core, msisdn, home, _ in demo.attaches():
        if core not in demo.device_of and core not in blacklisted and home and msisdn:
            unregistered[core] = core
            users[core].add(msisdn)
    spans = _spans(demo, unregistered)
    assert sum(s >= 30 * DAY for s in spans) >= 5  # TRAVELER_ALLOWANCE, then ALLOWANCE_EXPIRED
    assert sum(s < 30 * DAY for s in spans) >= 5
    entries = {str(e.get("msisdn") or e.get("national_id")) for e in demo.by_type["traveler_entry"]}
    national_id = {int(str(s["msisdn"])): str(s["national_id"]) for s in demo.by_type["subscriber"]}
    with_entry = sum(1 for us in users.values() if any(str(u) in entries or national_id.get(u) in entries for u in us))
    assert 0 < with_entry < len(users)  # most travelers have an entry; smuggled phones do not
    assert any(e.get("national_id") for e in demo.by_type["traveler_entry"])


def test_blocked_devices_attach(demo: Demo) -> None:
    blacklisted = {parse_imei(str(b["imei"]), POLICY) for b in demo.by_type["blacklist"]}
    blocked_dev = {core for core, dev in demo.device_of.items() if dev["block"] is not None}
    seen = {core for _, core, _, _, _ in demo.attaches()}
    assert seen & blocked_dev and seen & blacklisted & set(demo.device_of)
    assert seen & (blacklisted - set(demo.device_of))
    assert {dev["block"] for dev in demo.device_of.values()} >= {None, "stolen", "lost"}


def test_owners_use_both_slots(demo: Demo) -> None:
    owners_slot1 = owners_slot2 = non_owner = 0
    owner_ids = {
        core: parse_msisdn(str(dev["owner"]), PLAN)[0]
        for core, dev in demo.device_of.items()
        if dev["owner"] and not dev["cloned"]
    }
    national_id = {int(str(s["msisdn"])): s["national_id"] for s in demo.by_type["subscriber"]}
    for _, core, msisdn, _, slot in demo.attaches():
        owner = owner_ids.get(core)
        if owner is None or not msisdn:
            continue
        if msisdn == owner:
            owners_slot1 += slot == 1
        elif slot == 2 and national_id.get(msisdn) == national_id.get(owner):
            owners_slot2 += 1  # the owner's second SIM
        else:
            non_owner += 1  # family, borrowers, buyers without transfer, thieves
    assert owners_slot1 > owners_slot2 > 0 and non_owner > 0


# -- activation codes and the CLI ---------------------------------------------------------------------


def test_activation_codes_are_opt_in() -> None:
    codes = [r for r in generate_registry(3000, 5, DemoMix(activation_codes=True)) if "activation_code" in r]
    assert codes
    for rec in codes:
        code = str(rec["activation_code"])
        assert len(code) == 6 and code.isdigit() and code[0] != "0"
        assert rec["owner"] is None and rec["origin"] != "pre_registry"


def test_cli_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(demo_data, ["--devices", "300", "--attaches", "1000", "--seed", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "simultaneous_clone" in result.output
    records, rows = _read(out)
    assert len(rows) == 1000 and sum(r["type"] == "device" for r in records) == 300
    again = CliRunner().invoke(
        demo_data, ["--devices", "300", "--seed", "5", "-o", str(tmp_path / "d2"), "--with-codes", "--json"]
    )
    assert again.exit_code == 0, again.output
    summary = json.loads(again.output)
    assert summary["attach_rows"] == 1200 and summary["activation_codes"] > 0
    assert (tmp_path / "d2" / "registry.jsonl").read_bytes() != (out / "registry.jsonl").read_bytes()


def test_progress_and_size_checks(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    write_demo(tmp_path, 100, 300, 1, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, calls[-1][1]) and calls[-1][0] == calls[-1][1] > 100
    with pytest.raises(ValueError, match="devices"):
        write_demo(tmp_path / "x", 0, 10, 1)
    with pytest.raises(ValueError, match="attaches"):
        write_demo(tmp_path / "x", 10, -1, 1)
    assert not (tmp_path / "x").exists()


def test_cli_rejects_bad_sizes(tmp_path: Path) -> None:
    result = CliRunner().invoke(demo_data, ["--devices", "0", "-o", str(tmp_path)])
    assert result.exit_code != 0 and "--devices" in result.output
