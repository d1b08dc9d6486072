"""The registry control plane (issue 5): activation, transfer, operator SIMs, claim, recovery, IMEI
correction, repair, block / unblock / clone flag, and the status queries.

Every mutating operation runs its checks in the issue's order and then, in one synchronous step on the
event loop (no request is decided in between): applies the change to the live index
(eir.control_ops), journals it in the state, drops the grace records it makes moot and emits its
events. It then awaits the durable store's group commit, which writes the journal entry, the events and
the state changes in one transaction, and only then answers. Refusals raise :class:`ControlError` with
the issue's error code; the transports map codes to HTTP statuses. Decisions: docs/control-plane.md.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from eir.control_ops import Op, apply_op, encode_change
from eir.control_query import ERROR_CODES, ControlError, ControlQueries
from eir.events import Event, iso_utc
from eir.identifiers import MALFORMED, format_imei
from eir.log import fields
from eir.model import GraceKind
from eir.registry import CLONED, ORIGINS, activation_code_hash

if TYPE_CHECKING:
    from eir.engine import Engine
    from eir.index import Index

__all__ = ["ERROR_CODES", "MALFORMED", "Control", "ControlConfig", "ControlError"]

log = logging.getLogger("eir.control")
DAY: Final = 86_400
_REPAIR: Final = ORIGINS.index("repair")
#: Devices with wrong-code counters kept before stale ones are swept.
_MAX_TRACKED_DEVICES: Final = 100_000


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Control-plane settings (read once at start-up; see docs/control-plane.md)."""

    #: Key of the activation codes' keyed hash (EIR_CODE_KEY). Without it no code can be checked or issued.
    code_key: bytes | None = None
    #: Wrong activation codes accepted per device within ``wrong_code_window_s`` before refusing.
    max_wrong_codes: int = 5
    wrong_code_window_s: int = 3_600
    #: How long a transfer's activation code stays valid.
    transfer_code_ttl_s: int = 7 * DAY


def _valid_code(code: str) -> bool:
    return len(code) == 6 and code.isascii() and code.isdigit() and code[0] != "0"


class Control(ControlQueries):
    """The control plane of one engine (the service's ``svc.control``)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], int], config: ControlConfig | None = None) -> None:
        super().__init__(engine)
        self.clock = clock
        self.config = config or ControlConfig()
        #: Wrong-code times per device key (in memory: a restart forgets them; see the docs).
        self._wrong: dict[int, list[int]] = {}

    # --- plumbing ------------------------------------------------------------------------------------

    def _commit(self, op: str, ops: list[Op], now: int) -> int:
        """Apply a validated change to the live index and journal it (synchronous, atomic on the loop)."""
        idx = self.engine.bundle.index
        for m in ops:
            if not apply_op(idx, m):
                raise RuntimeError(f"{op}: validated change did not apply: {m[0]}")
        return self.engine.state.append_change(now, encode_change(op, ops))

    async def _durable(self, op: str, result: str) -> None:
        """Wait until the journal entry and the events are committed (durable stores only)."""
        barrier = getattr(self.engine.state, "barrier", None)
        if barrier is not None:
            await barrier()
        log.info("registry change", extra=fields(op=op, result=result))

    def _event(self, type_: str, now: int, imei: int, msisdn: int, *, slot: int = 1, model: str = "",
               subscribers: tuple[int, ...] = (), detail: dict[str, str] | None = None, code: str = "") -> None:
        ev = Event(type=type_, time=now, imei=imei, msisdn=msisdn or None, slot=slot, reason=None, deadline=None,
                   subscribers=subscribers, detail=detail)
        self.engine.publish(ev, model, code)

    def _drop_graces(self, idx: Index, dev: int, msisdn: int) -> int:
        st = self.engine.state
        return sum(len(st.drop_graces(imei, msisdn)) for imei in idx.device_imeis(dev))

    def _key(self) -> bytes:
        if not self.config.code_key:
            raise ControlError("code_key_missing", "activation codes cannot be checked: EIR_CODE_KEY is not set")
        return self.config.code_key

    def _too_many(self, key: int, now: int) -> bool:
        times = [t for t in self._wrong.get(key, ()) if t > now - self.config.wrong_code_window_s]
        if times:
            self._wrong[key] = times
        else:
            self._wrong.pop(key, None)
        return len(times) >= self.config.max_wrong_codes

    # --- activation and transfer (seed 001) ----------------------------------------------------------

    async def activate(self, imei: int, msisdn: int, code: str) -> dict[str, Any]:
        """The number becomes the owner with the device's code (or a transfer's code issued to it)."""
        if not _valid_code(code):
            raise ControlError("invalid_code_format", "the activation code is 6 digits and does not start with 0")
        idx, dev = self._device(imei)
        self._not_blocked(idx, dev)
        now = self.clock()
        owner = idx.owner[dev]
        if owner == msisdn:
            raise ControlError("already_activated", "this device is already activated for this number")
        transfer = idx.transfers.get(dev)
        if transfer is not None and (transfer.buyer != msisdn or transfer.expires <= now):
            transfer = None
        if owner and transfer is None:
            raise ControlError("already_owned", "this device is owned by another number and no transfer to this "
                                                "number is pending")
        key = idx.device_key(dev)
        if self._too_many(key, now):
            raise ControlError("too_many_attempts", "too many wrong activation codes for this device; try later")
        expected = transfer.code_hash if transfer is not None else idx.code_hash(dev)
        given = activation_code_hash(self._key(), key, code)
        if expected is None or not hmac.compare_digest(given, expected):
            if len(self._wrong) >= _MAX_TRACKED_DEVICES:
                # Bounded memory against someone trying codes on many devices: forget stale counters.
                cut = now - self.config.wrong_code_window_s
                self._wrong = {k: v for k, v in self._wrong.items() if v[-1] > cut}
            self._wrong.setdefault(key, []).append(now)
            log.info("registry change refused", extra=fields(op="activate", error_code="wrong_code"))
            raise ControlError("wrong_code", "the activation code is not valid for this device")
        self._wrong.pop(key, None)
        ops: list[Op] = [["owner", key, msisdn, now]]
        if idx.code_hash(dev) is not None:
            ops.append(["code", key, None])  # one-time: the box code is spent
        if dev in idx.transfers:
            ops.append(["transfer", key, None])
        self._commit("activate", ops, now)
        st = self.engine.state
        ended = st.drop_activation(key)
        dropped = self._drop_graces(idx, dev, msisdn)
        model = self._model(idx, dev)
        self._event("DEVICE_ACTIVATED", now, imei, msisdn, model=model)
        if owner:
            self._event("OWNERSHIP_TRANSFERRED", now, imei, msisdn, subscribers=(owner, msisdn),
                        detail={"op": "activate"})
        await self._durable("activate", "activated")
        return {"result": "activated", "imei": format_imei(imei), "msisdn": str(msisdn), "transferred": bool(owner),
                "activation_grace_ended": ended, "graces_dropped": dropped}

    async def transfer(self, imei: int, owner: int, buyer: int) -> dict[str, Any]:
        """Sale: a new one-time code goes to the buyer by SMS; the seller owns the device until it is used."""
        idx, dev = self._device(imei)
        self._not_blocked(idx, dev)
        if not owner or idx.owner[dev] != owner:
            raise ControlError("not_owner", "only the owner of the device can transfer it")
        if buyer == owner:
            raise ControlError("already_activated", "the buyer already owns this device")
        code_key = self._key()
        now = self.clock()
        key = idx.device_key(dev)
        code = str(secrets.randbelow(900_000) + 100_000)  # 6 digits, never a leading 0
        code_hash = activation_code_hash(code_key, key, code)
        expires = now + self.config.transfer_code_ttl_s
        replaced = dev in idx.transfers
        self._commit("transfer", [["transfer", key, buyer, code_hash.hex(), now, expires]], now)
        # The code leaves the process only inside the buyer's SMS text (the event outbox), never logged.
        self._event("TRANSFER_CODE_ISSUED", now, imei, buyer, model=self._model(idx, dev), code=code)
        self._event("TRANSFER_STARTED", now, imei, buyer, subscribers=(owner, buyer),
                    detail={"expires": iso_utc(expires) or ""})
        del code
        await self._durable("transfer", "transfer_started")
        return {"result": "transfer_started", "imei": format_imei(imei), "buyer": str(buyer),
                "code_expires": iso_utc(expires), "replaced_pending_transfer": replaced,
                "owner_until_activation": str(owner)}

    # --- operator SIMs (seed 000) --------------------------------------------------------------------

    async def add_operator_sim(self, imei: int, owner: int, slot: int, msisdn: int) -> dict[str, Any]:
        """The owner designates ``msisdn`` for ``slot`` of a device that counts as cloned."""
        idx, dev = self._device(imei)
        self._not_blocked(idx, dev)
        self._owner(idx, dev, owner)
        if not self._counts_cloned(idx, dev):
            raise ControlError("not_eligible", "operator SIMs can only be defined for a device whose IMEI is forged")
        self._slot(idx, dev, slot)
        current = idx.operator_sim(dev, slot)
        if current == msisdn:
            return {"result": "unchanged", "imei": format_imei(imei), "slot": slot, "msisdn": str(msisdn)}
        if current:
            raise ControlError("slot_in_use", "this slot already has an operator SIM; remove it first")
        now = self.clock()
        key = idx.device_key(dev)
        self._commit("operator_sim_add", [["opsim", key, slot, msisdn]], now)
        dropped = self._drop_graces(idx, dev, msisdn)
        self._event("OPERATOR_SIM_ADDED", now, imei, msisdn, slot=slot, subscribers=(owner,))
        await self._durable("operator_sim_add", "added")
        return {"result": "operator_sim_added", "imei": format_imei(imei), "slot": slot, "msisdn": str(msisdn),
                "graces_dropped": dropped}

    async def remove_operator_sim(self, imei: int, owner: int, slot: int, msisdn: int) -> dict[str, Any]:
        """The owner removes the operator SIM ``msisdn`` of ``slot``."""
        idx, dev = self._device(imei)
        self._owner(idx, dev, owner)
        self._slot(idx, dev, slot)
        if idx.operator_sim(dev, slot) != msisdn:
            raise ControlError("no_operator_sim", "this number is not the operator SIM of this slot")
        now = self.clock()
        self._commit("operator_sim_remove", [["opsim", idx.device_key(dev), slot, 0]], now)
        self._event("OPERATOR_SIM_REMOVED", now, imei, msisdn, slot=slot, subscribers=(owner,))
        await self._durable("operator_sim_remove", "removed")
        return {"result": "operator_sim_removed", "imei": format_imei(imei), "slot": slot, "msisdn": str(msisdn)}

    # --- claim (pre-registry devices) and recovery (seed 002) ----------------------------------------

    async def claim(self, imei: int, msisdn: int) -> dict[str, Any]:
        """"Add device": a pre-registry user of an unowned pre-registry device becomes its owner."""
        idx, dev = self._device(imei)
        self._not_blocked(idx, dev)
        if not idx.is_pre_registry_user(dev, msisdn):
            raise ControlError("not_pre_registry_user", "this number did not use this device before the registry")
        owner = idx.owner[dev]
        if owner == msisdn:
            raise ControlError("already_activated", "this device is already this number's")
        if owner:
            raise ControlError("already_owned", "this device is already owned by another number")
        now = self.clock()
        key = idx.device_key(dev)
        ops: list[Op] = [["owner", key, msisdn, now]]
        if idx.code_hash(dev) is not None:
            ops.append(["code", key, None])
        self._commit("claim", ops, now)
        ended = self.engine.state.drop_activation(key)
        dropped = self._drop_graces(idx, dev, msisdn)
        self._event("DEVICE_CLAIMED", now, imei, msisdn)
        self._event("DEVICE_ACTIVATED", now, imei, msisdn, model=self._model(idx, dev))
        await self._durable("claim", "claimed")
        return {"result": "claimed", "imei": format_imei(imei), "msisdn": str(msisdn),
                "activation_grace_ended": ended, "graces_dropped": dropped}

    async def recover(self, imei: int, old_msisdn: int, new_msisdn: int) -> dict[str, Any]:
        """Move a device from an expired or reassigned number of its owner to the owner's new number."""
        idx, dev = self._device(imei)
        self._not_blocked(idx, dev)
        if not old_msisdn or idx.owner[dev] != old_msisdn:
            raise ControlError("wrong_previous_number", "the previous number is not the owner of this device")
        old = idx.subscriber(old_msisdn)
        since = idx.owner_since[dev]
        ended = old is not None and (old.expired or bool(old.since and since and old.since > since))
        if not ended:
            raise ControlError("not_expired", "the previous number is still the owner's: transfer the device instead")
        new = idx.subscriber(new_msisdn)
        if new is None or new.expired or new_msisdn == old_msisdn:
            raise ControlError("unknown_subscriber", "the new number is not a known, active subscriber")
        now = self.clock()
        key = idx.device_key(dev)
        ops: list[Op] = [["owner", key, new_msisdn, now]]
        if dev in idx.transfers:
            ops.append(["transfer", key, None])  # a sale started by the lost number is void
        self._commit("recover", ops, now)
        dropped = self._drop_graces(idx, dev, new_msisdn)
        self._event("DEVICE_RECOVERED", now, imei, new_msisdn, subscribers=(old_msisdn, new_msisdn))
        await self._durable("recover", "recovered")
        return {"result": "recovered", "imei": format_imei(imei), "msisdn": str(new_msisdn),
                "graces_dropped": dropped}

    # --- IMEI correction (seed 004) and repair -------------------------------------------------------

    async def imei_correction(self, requester: int, registered_imeis: list[int], observed_imeis: list[int],
                              apply: bool) -> dict[str, Any]:
        """The ticket of seed 004: ``approved`` (and with ``apply`` done) or a ControlError outcome."""
        self._correction_checks(requester, registered_imeis, observed_imeis)
        for imei in observed_imeis:
            rows = await self.history(imei)
            if not any(r[0] == requester for r in rows):
                raise ControlError("not_seen_on_all_slots", "put your SIM in every slot of the device, use it "
                                                            "for a while, then file the request again")
        # The history read awaited: check again on the index as it is now, then change it at once.
        idx, dev = self._correction_checks(requester, registered_imeis, observed_imeis)
        old = idx.device_imeis(dev)
        new = tuple(observed_imeis)
        answer: dict[str, Any] = {"outcome": "approved", "applied": apply,
                                  "registered_imeis": [format_imei(c) for c in old],
                                  "imeis": [format_imei(c) for c in (new if apply else old)]}
        if not apply:
            return answer
        now = self.clock()
        key = idx.device_key(dev)
        ops: list[Op] = []
        if dev in idx.transfers:
            ops.append(["transfer", key, None])  # its code was bound to the old IMEIs: transfer again
        ops.append(["imeis", key, list(new)])  # last: the key may be one of the IMEIs that move away
        self._commit("imei_correction", ops, now)
        self._moved(old, new, requester, idx, dev)
        self._event("IMEI_CORRECTED", now, new[0], requester,
                    detail={"old": ",".join(map(format_imei, old)), "new": ",".join(map(format_imei, new))})
        await self._durable("imei_correction", "approved")
        return answer

    def _moved(self, old: tuple[int, ...], new: tuple[int, ...], owner: int, idx: Index, dev: int) -> None:
        """Grace records on IMEIs the device no longer has are moot; so are the owner's on the new ones."""
        st = self.engine.state
        for imei in old:
            if imei not in new:
                st.drop_imei_graces(imei)
        self._drop_graces(idx, dev, owner)

    async def repair(self, owner: int, old_imei: int, new_imei: int) -> dict[str, Any]:
        """A repaired device: one IMEI replaced by a new one of the same model, in the same slot."""
        idx, dev = self._device(old_imei)
        self._not_blocked(idx, dev)
        self._owner(idx, dev, owner)
        old_tac, new_tac = old_imei // 1_000_000, new_imei // 1_000_000
        if old_tac != new_tac:
            a, b = idx.tac_info(old_tac), idx.tac_info(new_tac)
            if a is None or b is None or a != b:
                raise ControlError("model_mismatch", "the new IMEI's model (TAC) does not match the device's")
        if idx.device_of(new_imei) >= 0:
            raise ControlError("imei_in_use", "the new IMEI already belongs to a registered device")
        if idx.blacklist_reason(new_imei) is not None:
            raise ControlError("device_blocked", "the new IMEI is on the block list")
        old = idx.device_imeis(dev)
        new = tuple(new_imei if c == old_imei else c for c in old)
        now = self.clock()
        key = idx.device_key(dev)
        ops: list[Op] = [["origin", key, "repair"]]
        if dev in idx.transfers:
            ops.append(["transfer", key, None])
        ops.append(["imeis", key, list(new)])  # last: the key may be the IMEI replaced
        self._commit("repair", ops, now)
        self._moved(old, new, owner, idx, dev)
        self._event("DEVICE_REPAIRED", now, new_imei, owner,
                    detail={"old": format_imei(old_imei), "new": format_imei(new_imei)})
        await self._durable("repair", "repaired")
        return {"result": "repaired", "imeis": [format_imei(c) for c in new], "origin": ORIGINS[_REPAIR]}

    # --- block, unblock, clone flag ------------------------------------------------------------------

    async def block(self, imei: int, reason: str) -> dict[str, Any]:
        """Stolen / lost report: a registered IMEI blocks its device, any other IMEI is block-listed."""
        idx = self.engine.bundle.index
        dev = idx.device_of(imei)
        if dev >= 0:
            if idx.block_reason(dev) == reason:
                return {"result": "unchanged", "imei": format_imei(imei), "blocked": True, "reason": reason}
            op: Op = ["block", idx.device_key(dev), reason]
        else:
            if idx.blacklist_reason(imei) == reason:
                return {"result": "unchanged", "imei": format_imei(imei), "blocked": True, "reason": reason}
            op = ["blacklist", imei, reason]
        now = self.clock()
        self._commit("block", [op], now)
        self._event("DEVICE_BLOCKED", now, imei, 0, detail={"reason": reason, "scope": op[0]})
        await self._durable("block", "blocked")
        return {"result": "blocked", "imei": format_imei(imei), "scope": "device" if dev >= 0 else "imei",
                "reason": reason}

    async def unblock(self, imei: int) -> dict[str, Any]:
        """Lift the device block of the IMEI's device and the IMEI's own block-list entry."""
        idx = self.engine.bundle.index
        dev = idx.device_of(imei)
        ops: list[Op] = []
        if dev >= 0 and idx.block_reason(dev) is not None:
            ops.append(["block", idx.device_key(dev), None])
        if idx.blacklist_reason(imei) is not None:
            ops.append(["blacklist", imei, None])
        if not ops:
            if dev < 0:
                raise ControlError("unknown_device", "this IMEI is neither registered nor blocked")
            return {"result": "unchanged", "imei": format_imei(imei), "blocked": False}
        now = self.clock()
        self._commit("unblock", ops, now)
        self._event("DEVICE_UNBLOCKED", now, imei, 0)
        await self._durable("unblock", "unblocked")
        return {"result": "unblocked", "imei": format_imei(imei)}

    async def clone_flag(self, imei: int, cloned: bool) -> dict[str, Any]:
        """Set or clear the registry's clone flag; clearing also clears the network's detection."""
        idx, dev = self._device(imei)
        st = self.engine.state
        imeis = idx.device_imeis(dev)
        flagged = bool(idx.flags[dev] & CLONED)
        detected = any(i in st.detections for i in imeis)
        if cloned == flagged and (cloned or not detected):
            return {"result": "unchanged", "imei": format_imei(imei), "cloned": cloned}
        now = self.clock()
        self._commit("clone_flag", [["flag", idx.device_key(dev), "cloned", cloned]], now)
        dropped = 0
        if not cloned:
            for i in imeis:
                st.drop_detection(i)
                st.clear_switchbacks(i)
                dropped += len(st.drop_imei_graces(i, GraceKind.CLONE))
        self._event("CLONE_FLAG_SET" if cloned else "CLONE_FLAG_CLEARED", now, imei, 0)
        await self._durable("clone_flag", "set" if cloned else "cleared")
        return {"result": "clone_flag_set" if cloned else "clone_flag_cleared", "imei": format_imei(imei),
                "detections_cleared": detected and not cloned, "graces_dropped": dropped}
