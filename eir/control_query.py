"""The control plane's shared checks and its read-only queries: authenticity (seed 001) and IMEI status
(seed 003), plus the checks of the IMEI-correction ticket (seed 004).

Nothing here changes the index or the state. The answers never carry the owner's number; the IMEI
status answers the numbers that used a device before the requester only under the registry's
conditions (seed 003: seen with the requester on every IMEI, no definitive owner, not forged).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final

from eir.events import iso_utc
from eir.identifiers import format_imei
from eir.registry import BLOCKED, CLONED, MAX_IMEIS_PER_DEVICE, ORIGIN_MASK, ORIGINS

if TYPE_CHECKING:
    from eir.engine import Engine
    from eir.index import Index

#: ``(msisdn, slot, first, last, count)`` of the observation history, newest first.
HistoryRow = tuple[int, int, int, int, int]
_PRE_REGISTRY: Final = ORIGINS.index("pre_registry")

#: Authenticity answers (seed 001's inquiry), in the registry's wording where the seeds give it.
AUTHENTICITY_TEXTS: Final[dict[str, tuple[str, str]]] = {
    "legal": ("این دستگاه قانونی است و در سامانه همتا ثبت شده است.",
              "This device is legal and registered in the Hamta registry."),
    "restricted": ("به دلیل جعل این شناسه بر روی دستگاه‌های مختلف و جلوگیری از تضییع حقوق مالک دستگاه، استفاده از "
                   "آن محدود به شماره مالک است.",
                   "Because this IMEI is forged on several devices, and to protect the owner's rights, its use is "
                   "restricted to the owner's number."),
    "not_activated": ("این دستگاه قانونی است ولی هنوز فعال‌سازی نشده است. آن را با کد فعال‌سازی، در حضور فروشنده، "
                      "برای سیم‌کارت خود فعال کنید.",
                      "This device is legal but not activated yet. Activate it for your SIM with its activation "
                      "code, in the seller's presence."),
    "blocked": ("شناسه دستگاه (IMEI) قانونی نیست و در شبکه تلفن همراه سرویس نخواهد گرفت.",
                "This IMEI is not legal and will not be served on the mobile network."),
    "unregistered": ("این شناسه در سامانه همتا ثبت نشده است.",
                     "This IMEI is not registered in the Hamta registry."),
    "malformed": ("شناسه وارد شده صحیح نیست.", "The IMEI entered is not valid."),
}


#: Every error code a Control operation can raise (the transports map each to an HTTP status).
ERROR_CODES: Final = frozenset({
    "abused", "already_activated", "already_owned", "code_key_missing", "device_blocked", "full_change_not_allowed",
    "illegal_device", "imei_in_use", "incorrect_imei_observed", "invalid_code_format", "invalid_slot",
    "model_mismatch", "no_operator_sim", "not_eligible", "not_expired", "not_owner", "not_pre_registry_user",
    "not_seen_on_all_slots", "not_seen_with_requester", "owned", "slot_in_use", "target_owned_by_other",
    "too_many_attempts", "unknown_device", "unknown_subscriber", "wrong_code", "wrong_previous_number",
})


class ControlError(Exception):
    """A refused registry operation. ``code`` is the issue's error code (e.g. "wrong_code")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        #: English, safe to show: never contains the owner's number or a code.
        self.message = message

    def __repr__(self) -> str:
        return f"ControlError({self.code!r}, {self.message!r})"


class ControlQueries:
    """Checks shared by the operations, and the read-only queries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- checks ----------------------------------------------------------------------------------------

    def _device(self, imei: int) -> tuple[Index, int]:
        idx = self.engine.bundle.index
        dev = idx.device_of(imei) if imei >= 0 else -1
        if dev < 0:
            raise ControlError("unknown_device", "no registered device has this IMEI")
        return idx, dev

    @staticmethod
    def _blocked(idx: Index, dev: int) -> bool:
        return bool(idx.flags[dev] & BLOCKED) or any(idx.blacklist_reason(i) is not None for i in idx.device_imeis(dev))

    def _not_blocked(self, idx: Index, dev: int) -> None:
        if self._blocked(idx, dev):
            raise ControlError("device_blocked", "this device is blocked")

    @staticmethod
    def _owner(idx: Index, dev: int, owner: int) -> None:
        if not owner or idx.owner[dev] != owner:
            raise ControlError("not_owner", "only the owner of the device can do this")

    @staticmethod
    def _slot(idx: Index, dev: int, slot: int) -> None:
        n = len(idx.device_imeis(dev))
        if not 1 <= slot <= n:
            raise ControlError("invalid_slot", f"the device has slots 1..{n}")

    @staticmethod
    def _model(idx: Index, dev: int) -> str:
        """The device's model text, else its TAC's brand and model from the registry ("" if unknown)."""
        model = idx.model(dev)
        if model:
            return model
        tac = idx.tac_info(idx.device_key(dev) // 1_000_000)
        return " ".join(p for p in tac if p) if tac is not None else ""

    def _counts_cloned(self, idx: Index, dev: int) -> bool:
        """The registry's clone flag, or an enforced network detection on one of its IMEIs (SPEC §4.1)."""
        if idx.flags[dev] & CLONED:
            return True
        dets = self.engine.state.detections
        return any((d := dets.get(i)) is not None and d.enforced for i in idx.device_imeis(dev))

    def _correction_checks(self, requester: int, registered: list[int], observed: list[int]) -> tuple[Index, int]:
        """Seed 004's outcomes up to the history check, in the issue's order; returns the device."""
        if (not observed or len(observed) > MAX_IMEIS_PER_DEVICE or any(i < 0 for i in observed)
                or len(set(observed)) < len(observed)):
            raise ControlError("incorrect_imei_observed", "an observed IMEI is not valid")
        idx = self.engine.bundle.index
        devs = {idx.device_of(i) for i in registered}
        dev = devs.pop() if len(devs) == 1 else -1
        if dev < 0 or not requester or idx.owner[dev] != requester:
            raise ControlError("not_owner", "the requester does not own a device with these registered IMEIs")
        if self._blocked(idx, dev) or any(idx.blacklist_reason(i) is not None for i in observed):
            raise ControlError("illegal_device", "this device is not legal and will not be served")
        current = idx.device_imeis(dev)
        if set(observed) == set(current):
            raise ControlError("already_activated", "the observed IMEIs are already the registered ones")
        if not set(observed) & set(current):
            raise ControlError("full_change_not_allowed", "only a partial correction is possible; a device whose "
                                                          "IMEIs all changed is registered as repaired")
        if any(idx.device_of(i) not in (-1, dev) for i in observed):
            raise ControlError("target_owned_by_other", "an observed IMEI belongs to another device")
        return idx, dev

    # --- queries ---------------------------------------------------------------------------------------

    async def history(self, imei: int) -> list[HistoryRow]:
        """Observation history of an IMEI, newest first (a durable store reads its history file)."""
        st = self.engine.state
        rows_fn = getattr(st, "history_rows", None)
        if rows_fn is not None and inspect.iscoroutinefunction(rows_fn):
            rows: list[HistoryRow] = await rows_fn(imei)
            return rows
        h = st.history(imei)
        return h.subscribers() if h is not None else []

    async def authenticity(self, imei: int) -> dict[str, Any]:
        """Seed 001's authenticity inquiry: status, model, origin and the registry's wording; no number."""
        idx = self.engine.bundle.index
        model: str | None = None
        origin: str | None = None
        if imei < 0:
            status = "malformed"
        else:
            dev = idx.device_of(imei)
            tac = idx.tac_info(imei // 1_000_000)
            if tac is not None:
                model = " ".join(p for p in tac if p)
            if dev < 0:
                status = "blocked" if idx.blacklist_reason(imei) is not None else "unregistered"
            else:
                model = idx.model(dev) or model
                origin = idx.origin(dev)
                if self._blocked(idx, dev):
                    status = "blocked"
                elif self._counts_cloned(idx, dev):
                    status = "restricted"
                elif not idx.owner[dev] and idx.flags[dev] & ORIGIN_MASK != _PRE_REGISTRY:
                    status = "not_activated"
                else:
                    status = "legal"
        fa, en = AUTHENTICITY_TEXTS[status]
        return {"imei": format_imei(imei) if imei >= 0 else None, "status": status,
                "legal": status in ("legal", "restricted", "not_activated"),
                "restricted_to_owner": status == "restricted", "model": model, "origin": origin,
                "text_fa": fa, "text_en": en}

    async def imei_status(self, imei: int, requester: int) -> dict[str, Any]:
        """Seed 003: the numbers that used the device before the requester, most recent first."""
        idx, dev = self._device(imei)
        if self._blocked(idx, dev):
            # A stolen device's holder must not learn its victims' numbers.
            raise ControlError("device_blocked", "this device is blocked")
        imeis = idx.device_imeis(dev)
        rows = {i: await self.history(i) for i in imeis}
        if not requester or not all(any(r[0] == requester for r in rs) for rs in rows.values()):
            raise ControlError("not_seen_with_requester", "use the device with your SIM in every slot, then ask "
                                                          "again")
        idx, dev = self._device(imei)  # re-read after the awaits
        if idx.owner[dev]:
            raise ControlError("owned", "this device is under the definitive ownership of a number")
        if self._counts_cloned(idx, dev):
            raise ControlError("abused", "this IMEI has been abused (forged on other devices)")
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for rs in rows.values():
            for msisdn, _, f, la, _ in rs:
                first[msisdn] = min(first.get(msisdn, f), f)
                last[msisdn] = max(last.get(msisdn, la), la)
        mine = first[requester]
        before = sorted((m for m in first if m != requester and first[m] < mine), key=lambda m: -last[m])
        return {"imei": format_imei(imei), "imeis": [format_imei(i) for i in imeis],
                "previous_users": [{"msisdn": str(m), "first_seen": iso_utc(first[m]), "last_seen": iso_utc(last[m])}
                                   for m in before]}
