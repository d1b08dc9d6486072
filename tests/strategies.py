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
    """A registry over a fixed pool of IMEIs and subscribers: owners, clones, pre-registry, blocks."""
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
            if n == 2 and draw(st.booleans()):
                rec["operator_sims"] = {"2": draw(st.sampled_from(POOL_SUBSCRIBERS))}
        if kind == "pre":
            rec["origin"] = "pre_registry"
            rec["cloned"] = draw(st.booleans())
            rec["pre_registry_users"] = draw(st.lists(st.sampled_from(POOL_SUBSCRIBERS), max_size=2, unique=True))
        if kind == "blocked":
            rec["block"] = "stolen"
        records.append(rec)
    return records


@st.composite
def attach_sequences(draw: st.DrawFn, start: int, max_size: int = 60) -> list[tuple[int, str, str, int]]:
    """Time-ordered attaches ``(time, imei, msisdn, slot)`` over the pool, with gaps from a second to weeks."""
    gaps = st.sampled_from([1, 60, 600, 3600, 6 * 3600, 86_400, 3 * 86_400, 10 * 86_400, 29 * 86_400])
    n = draw(st.integers(1, max_size))
    t = start
    rows = []
    for _ in range(n):
        t += draw(gaps)
        rows.append((t, imei15(draw(st.sampled_from([*POOL_CORES, 35693803199999]))),
                     draw(st.sampled_from(POOL_SUBSCRIBERS)), draw(st.integers(1, 2))))
    return rows
