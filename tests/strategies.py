"""Hypothesis strategies, all in one place (identifiers, registries, attach sequences)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from eir.identifiers import imei15

DIGITS = "0123456789"

#: 14-digit IMEI cores that are not test IMEIs (not all the same digit).
imei_cores = st.integers(min_value=10**13, max_value=10**14 - 1).filter(lambda c: len(set(str(c))) > 1)

#: Iranian mobile national significant numbers: 9 followed by 9 digits.
iran_nsn = st.text(DIGITS, min_size=9, max_size=9).map(lambda s: "9" + s)


@st.composite
def imei_forms(draw: st.DrawFn, core: int | None = None) -> tuple[int, str]:
    """A core and one of its accepted textual forms (14, 15 with check digit, 16 IMEISV, prefixes)."""
    c = draw(imei_cores) if core is None else core
    s14 = f"{c:014d}"
    form = draw(st.sampled_from(["14", "15", "16"]))
    text = {"14": s14, "15": imei15(c), "16": s14 + draw(st.text(DIGITS, min_size=2, max_size=2))}[form]
    prefix = draw(st.sampled_from(["", "imei-", "IMEI-"] + (["imeisv-"] if form == "16" else [])))
    return c, prefix + text


@st.composite
def msisdn_forms(draw: st.DrawFn) -> tuple[int, str]:
    """An Iranian mobile number and one of its five accepted forms."""
    nsn = draw(iran_nsn)
    form = draw(st.sampled_from(["0{}", "{}", "+98{}", "0098{}", "98{}"]))
    return int("98" + nsn), form.format(nsn)


# --- small registries and attach sequences for the engine properties ---------------------------------

POOL_SUBSCRIBERS = [f"0912{n:07d}" for n in range(1, 7)]
POOL_CORES = [35693803100000 + n for n in range(1, 9)]


@st.composite
def small_registries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A registry over a fixed pool of IMEIs and subscribers: owners, clones, operator SIMs, pre-registry
    users (on cloned devices too), device blocks and block-list entries (on and off devices)."""
    records: list[dict[str, Any]] = []
    cores = list(POOL_CORES)
    i = 0
    while i < len(cores) - 2:
        n = draw(st.integers(1, 2))
        imeis = [imei15(c) for c in cores[i : i + n]]
        i += n
        kind = draw(st.sampled_from(["owned", "owned", "cloned", "pre", "unowned", "blocked", "none"]))
        if kind == "none":
            continue  # left unregistered: the traveler rules
        rec: dict[str, Any] = {"type": "device", "imeis": imeis}
        if kind in ("owned", "cloned", "blocked"):
            rec["owner"] = draw(st.sampled_from(POOL_SUBSCRIBERS))
        if kind == "cloned":
            rec["cloned"] = True
        if kind in ("owned", "cloned") and draw(st.booleans()):
            rec["operator_sims"] = {str(draw(st.integers(1, n))): draw(st.sampled_from(POOL_SUBSCRIBERS))}
        if kind == "pre":
            rec["origin"] = "pre_registry"
            rec["cloned"] = draw(st.booleans())
            rec["pre_registry_users"] = draw(st.lists(st.sampled_from(POOL_SUBSCRIBERS), max_size=2, unique=True))
        if kind == "blocked":
            rec["block"] = "stolen"
        records.append(rec)
    for core in draw(st.lists(st.sampled_from([*POOL_CORES, 35693803199999]), max_size=1)):
        records.append({"type": "blacklist", "imei": imei15(core), "reason": "stolen"})
    return records


@st.composite
def attach_sequences(draw: st.DrawFn, start: int, max_size: int = 60,
                     dense: bool = False) -> list[tuple[int, str, str, int]]:
    """Time-ordered attaches ``(time, imei, msisdn, slot)`` over the pool, with gaps from a second to weeks
    (``dense``: up to an hour, so that switch-backs and clone detections are common)."""
    gaps = st.sampled_from([1, 60, 600, 3600] if dense else
                           [1, 60, 600, 3600, 6 * 3600, 86_400, 3 * 86_400, 10 * 86_400, 29 * 86_400])
    n = draw(st.integers(1, max_size))
    t = start
    rows = []
    for _ in range(n):
        t += draw(gaps)
        rows.append((t, imei15(draw(st.sampled_from([*POOL_CORES, 35693803199999]))),
                     draw(st.sampled_from(POOL_SUBSCRIBERS)), draw(st.integers(1, 2))))
    return rows


# --- registry records for snapshot round trips (eir.registry / eir.snapshot / eir.index) -------------

#: Registry instants: epoch seconds after the epoch, up to 2100.
registry_times = st.integers(min_value=1, max_value=4_102_444_800)
#: National ids as the registry writes them: 1-18 ASCII digits, leading zeros significant.
national_ids = st.text(DIGITS, min_size=1, max_size=18)
#: IMSIs: 6-15 digits, MCC not starting with 0.
imsis = st.integers(min_value=10**5, max_value=10**15 - 1)


@st.composite
def time_forms(draw: st.DrawFn, t: int | None = None) -> tuple[int, object]:
    """An instant and one accepted registry form: epoch int or float, ISO 8601 with ``Z`` or an offset."""
    import datetime as _dt

    t = draw(registry_times) if t is None else t
    form = draw(st.sampled_from(["int", "float", "z", "offset"]))
    if form == "int":
        return t, t
    if form == "float":
        return t, t + draw(st.sampled_from([0.0, 0.25, 0.999]))
    if form == "z":
        return t, _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat().replace("+00:00", "Z")
    minutes = draw(st.sampled_from([-480, -60, 0, 210, 270, 330]))
    zone = _dt.timezone(_dt.timedelta(minutes=minutes))
    return t, _dt.datetime.fromtimestamp(t, zone).isoformat()


@st.composite
def registry_records(draw: st.DrawFn, max_devices: int = 6, max_subscribers: int = 6) -> list[dict[str, Any]]:
    """A valid registry of every record type, in shuffled order.

    Devices get 1-4 unique IMEIs in any accepted form and random owners, flags, operator SIMs,
    pre-registry users, blocks and activation codes; subscribers have unique MSISDNs and IMSIs; the
    blacklist names IMEIs on and off devices; traveler entries go by MSISDN, national id or both.
    """
    cores = draw(st.lists(imei_cores, min_size=1, max_size=4 * max_devices, unique=True))
    numbers = draw(st.lists(msisdn_forms(), min_size=1, max_size=12, unique_by=lambda p: p[0]))
    records: list[dict[str, Any]] = []
    i = 0
    while i < len(cores) and len(records) < max_devices:
        n = draw(st.integers(1, min(4, len(cores) - i)))
        device_cores, i = cores[i : i + n], i + n
        rec: dict[str, Any] = {
            "type": "device",
            "imeis": [draw(imei_forms(c))[1] for c in device_cores],
            "model": draw(st.sampled_from(["", "Samsung SM-J700F", "Nokia 105", "\u06af\u0648\u0634\u06cc"])),
            "origin": draw(st.sampled_from(["import", "pre_registry", "traveler", "repair", None])),
        }
        if draw(st.booleans()):
            rec["owner"] = draw(st.sampled_from(numbers))[1]
            rec["owner_since"] = draw(time_forms())[1]
        for key, values in (("cloned", st.booleans()), ("block", st.sampled_from(["stolen", "lost", "court order"]))):
            if draw(st.booleans()):
                rec[key] = draw(values)
        if draw(st.booleans()):
            slots = draw(st.lists(st.integers(1, n), max_size=n, unique=True))
            rec["operator_sims"] = {str(s): draw(st.sampled_from(numbers))[1] for s in slots}
        if draw(st.booleans()):
            rec["pre_registry_users"] = [p[1] for p in draw(st.lists(st.sampled_from(numbers), max_size=3))]
        if draw(st.booleans()):
            rec["activation_code"] = draw(st.sampled_from(["100000", "999999", "482913", 123456]))
        records.append(rec)
    for core in draw(st.lists(st.sampled_from(cores), max_size=3, unique=True)) + draw(
        st.lists(imei_cores.filter(lambda c: c not in cores), max_size=2, unique=True)
    ):
        records.append({"type": "blacklist", "imei": draw(imei_forms(core))[1], "reason": "stolen"})
    subscribers = draw(st.lists(st.sampled_from(numbers), max_size=max_subscribers, unique_by=lambda p: p[0]))
    sub_imsis = draw(st.lists(imsis, min_size=len(subscribers), max_size=len(subscribers), unique=True))
    for (_, text), imsi in zip(subscribers, sub_imsis, strict=True):
        sub: dict[str, Any] = {"type": "subscriber", "msisdn": text}
        for key, values in (
            ("imsi", st.just(str(imsi))), ("national_id", national_ids),
            ("since", time_forms().map(lambda p: p[1])), ("expired", st.booleans()),
        ):  # fmt: skip
            if draw(st.booleans()):
                sub[key] = draw(values)
        records.append(sub)
    for _ in range(draw(st.integers(0, 3))):
        entry: dict[str, Any] = {"type": "traveler_entry", "entered": draw(time_forms())[1]}
        who = draw(st.sampled_from(["msisdn", "national_id", "both"]))
        if who != "national_id":
            entry["msisdn"] = draw(st.sampled_from(numbers))[1]
        if who != "msisdn":
            entry["national_id"] = draw(national_ids)
        records.append(entry)
    for tac in draw(st.lists(st.integers(10**6, 10**8 - 1), max_size=3, unique=True)):
        records.append({"type": "tac", "tac": f"{tac:08d}", "brand": "Brand", "model": f"Model {tac}"})
    return draw(st.permutations(records))


# --- control plane (eir.control): small registries and random operation sequences ---------------------

#: IMEI cores of the control-plane properties: one TAC (repairs between them match), the last ones free.
CONTROL_CORES = [35693803200000 + n for n in range(1, 11)]
CONTROL_SUBSCRIBERS = [989120000001 + n for n in range(6)]  # POOL_SUBSCRIBERS in E.164
CONTROL_CODE = "123456"
CONTROL_KINDS = ("owned", "cloned", "code", "nocode", "pre", "blocked")


@st.composite
def control_registries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Devices of every kind over the first 7 control cores (3 stay free), subscribers (one expired), a TAC."""
    subs = [str(s) for s in CONTROL_SUBSCRIBERS]
    records: list[dict[str, Any]] = []
    cores = CONTROL_CORES[:7]
    i = 0
    while i < len(cores):
        n = draw(st.integers(1, min(2, len(cores) - i)))
        rec: dict[str, Any] = {"type": "device", "imeis": [f"{c:014d}" for c in cores[i : i + n]]}
        i += n
        kind = draw(st.sampled_from(CONTROL_KINDS))
        if kind in ("owned", "cloned", "blocked"):
            rec["owner"] = draw(st.sampled_from(subs))
            rec["owner_since"] = "2025-01-01T00:00:00Z"
        if kind == "cloned":
            rec["cloned"] = True
        if kind == "code":
            rec["activation_code"] = CONTROL_CODE
        if kind == "pre":
            rec["origin"] = "pre_registry"
            rec["pre_registry_users"] = draw(st.lists(st.sampled_from(subs), min_size=1, max_size=2, unique=True))
        if kind == "blocked":
            rec["block"] = "stolen"
        records.append(rec)
    expired = draw(st.sampled_from(subs))
    for s in subs:
        records.append({"type": "subscriber", "msisdn": s, "since": "2020-01-01T00:00:00Z", "expired": s == expired})
    records.append({"type": "tac", "tac": "35693803", "brand": "Apple", "model": "iPhone 8"})
    return records


#: One step: an operation name and small ints the test interprets against the live registry
#: (indexes into CONTROL_CORES / CONTROL_SUBSCRIBERS; for "who" arguments 0 = the device's owner).
ControlStep = tuple[str, int, int, int, int, int]

_STEP_KINDS = ("attach", "attach", "owner_attach", "owner_attach", "advance", "activate", "activate", "transfer",
               "opsim_add", "opsim_del", "claim", "recover", "correction", "correction", "repair", "block",
               "unblock", "clone")


@st.composite
def control_steps(draw: st.DrawFn, max_size: int = 40) -> list[ControlStep]:
    """A random sequence of control operations and attaches."""
    n_cores, n_subs = len(CONTROL_CORES), len(CONTROL_SUBSCRIBERS)
    # "who" arguments are 0 (the owner) half of the time, so that owner-only operations get through.
    who = st.one_of(st.just(0), st.integers(0, n_subs))
    step = st.tuples(st.sampled_from(_STEP_KINDS), st.integers(0, n_cores - 1), who, who, st.integers(0, 3),
                     st.integers(0, n_cores - 1))
    return draw(st.lists(step, min_size=1, max_size=max_size))
