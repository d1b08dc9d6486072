"""Event records and texts: Jalali dates, Persian digits, the owner's number hidden."""

from __future__ import annotations

import zoneinfo

from eir.events import Event, Renderer, gregorian_date, iso_utc, jalali_date
from eir.identifiers import NumberingPlan
from eir.rules import load_rules
from tests.conftest import RULES_DIR, T0

TEHRAN = zoneinfo.ZoneInfo("Asia/Tehran")


def test_jalali_dates_in_tehran_time() -> None:
    assert jalali_date(T0, TEHRAN) == "1405/08/10"  # 2026-11-01 03:30 Tehran
    # 2026-03-20T21:00Z is already 2026-03-21 00:30 in Tehran: Nowruz, 1405/01/01.
    assert jalali_date(1774040400, TEHRAN) == "1405/01/01"
    assert gregorian_date(1774040400, TEHRAN) == "2026-03-21"
    assert iso_utc(T0) == "2026-11-01T00:00:00Z" and iso_utc(None) is None


def test_render_persian_digits_and_placeholders() -> None:
    r = load_rules(RULES_DIR / "default.toml")
    ren = Renderer(r.messages, r.tz, r.plan)
    ev = Event("GRACE_REMINDER", T0, 35693803000001, 989121234567, 1, "CLONE_GRACE", T0 + 3 * 86400)
    fa, en = ren.render(ev, "Samsung")
    assert fa is not None and en is not None
    assert "۰۹۱۲۱۲۳۴۵۶۷" in fa and "۱۴۰۵/۰۸/۱۳" in fa and "(۳ روز مانده)" in fa
    assert "09121234567" in en and "2026-11-04" in en and "(3 days left)" in en
    assert not any(c in "0123456789" for c in fa.replace("#777*", ""))


def test_ops_events_have_no_text_and_round_trip() -> None:
    r = load_rules(RULES_DIR / "default.toml")
    ren = Renderer(r.messages, r.tz, NumberingPlan())
    ev = Event("CLONE_DETECTED", T0, 35693803000001, 989121234567, 1, None, None,
               subscribers=(989121234567, 989122222222), seq=7)
    assert ren.render(ev) == (None, None)
    d = ev.to_dict()
    assert d["imei"] == "35693803000001" and d["subscribers"] == ["989121234567", "989122222222"]
    assert "text_fa" not in d
    assert Event.from_dict(d) == ev
    sub = Event("UNREGISTERED_DEVICE", T0, 1234567890123, 989121234567, 2, "UNREGISTERED", None,
                "fa", "en", seq=8)
    assert Event.from_dict(sub.to_dict()) == sub
    assert sub.to_dict()["imei"] == "01234567890123"


def test_deferred_texts_equal_the_texts_rendered_at_once() -> None:
    r = load_rules(RULES_DIR / "default.toml")
    ren = Renderer(r.messages, r.tz, r.plan)
    now = Event("CLONE_GRACE_STARTED", T0, 35693803000001, 989121234567, 1, "CLONE_GRACE", T0 + 30 * 86400)
    now.text_fa, now.text_en = ren.render(now, "Galaxy")
    later = Event("CLONE_GRACE_STARTED", T0, 35693803000001, 989121234567, 1, "CLONE_GRACE", T0 + 30 * 86400)
    later.defer_texts(ren, "Galaxy")
    assert later._pending is not None  # nothing rendered until read
    assert later.to_dict() == now.to_dict() and later == now and repr(later) == repr(now)
    assert later._pending is None and later.text_fa == now.text_fa and later.text_en == now.text_en
    # Setting a text replaces a pending render; events without a template keep None.
    set_ = Event("GRACE_REMINDER", T0, 35693803000001, 989121234567, 1, "CLONE_GRACE", T0 + 86400)
    set_.defer_texts(ren, "Galaxy")
    set_.text_en = "given"
    assert set_.text_en == "given" and set_.text_fa is None
    ops = Event("CLONE_DETECTED", T0, 35693803000001, 989121234567, 1, None, None)
    ops.defer_texts(ren, "Galaxy")
    assert (ops.text_fa, ops.text_en) == (None, None) and ops != now
