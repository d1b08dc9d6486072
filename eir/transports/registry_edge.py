"""The registry control plane's operations and their request parsing (the edge of ``/v1/registry/*``).

One table, :data:`OPERATIONS`, says for each operation its HTTP method and path, the
:class:`eir.control.Control` method it calls and the fields it takes; the HTTP routes
(:mod:`eir.transports.registry_http`), the OpenAPI document and ``eir admin`` are all built from it, so
the three cannot drift apart. This module imports nothing heavy (the CLI loads it).

:func:`parse_request` turns the raw JSON body / path / query values into the typed ints the backend
takes (IMEI = 14-digit core, MSISDN = E.164 digits) or raises :class:`EdgeError` naming the field with a
specific code. Two IMEI places are *not* request errors: the observed IMEIs of an IMEI-correction ticket
and the IMEI of an authenticity inquiry are passed on as :data:`~eir.identifiers.MALFORMED`, because
"this IMEI is malformed" is the answer the registry gives there (``incorrect_imei_observed`` /
status ``malformed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from eir.identifiers import MALFORMED, IdentifierError, ImeiPolicy, NumberingPlan, parse_imei, parse_msisdn

PREFIX: Final = "/v1/registry"
#: Largest accepted request body (an operation is a handful of short fields).
MAX_BODY_BYTES: Final = 16 * 1024
#: Most IMEIs a device has (SPEC §3: 1-4, slot order), so the most in a list and the highest slot.
MAX_IMEIS: Final = 4
MAX_REASON_CHARS: Final = 200
#: Longest identifier text looked at; longer ones are refused without parsing.
MAX_ID_CHARS: Final = 64

#: Edge error codes (all 400 except body_too_large 413): see docs/control-plane.md.
EDGE_ERRORS: Final = ("invalid_json", "unknown_field", "missing_field", "invalid_type", "invalid_imei",
                      "invalid_msisdn", "invalid_slot", "invalid_list", "invalid_reason", "body_too_large")

#: HTTP status of each backend refusal code. 404: the thing asked about is not in the registry;
#: 403: the number is not entitled (not the owner, not the previous owner, not a pre-registry user, not
#: seen with the device, wrong code); 429: wrong codes exhausted; 422: the request's content is unusable
#: for this device (code format, a malformed observed IMEI, a slot the device does not have, a number the
#: registry does not know); 409: the registry's state forbids it now (every other outcome); 503: the
#: service is not configured for it (no EIR_CODE_KEY: codes can be neither checked nor issued).
STATUS: Final[dict[str, int]] = {
    "unknown_device": 404,
    "not_owner": 403, "wrong_previous_number": 403, "not_pre_registry_user": 403, "wrong_code": 403,
    "not_seen_with_requester": 403,
    "too_many_attempts": 429,
    "invalid_code_format": 422, "incorrect_imei_observed": 422, "invalid_slot": 422, "unknown_subscriber": 422,
    "already_owned": 409, "already_activated": 409, "device_blocked": 409, "not_eligible": 409,
    "not_expired": 409, "model_mismatch": 409, "imei_in_use": 409, "illegal_device": 409,
    "full_change_not_allowed": 409, "target_owned_by_other": 409, "not_seen_on_all_slots": 409,
    "owned": 409, "abused": 409, "slot_in_use": 409, "no_operator_sim": 409,
    "code_key_missing": 503,
}  # fmt: skip
#: A code missing from :data:`STATUS` (a newer backend) is still a refusal: 409, and a warning in the log.
DEFAULT_STATUS: Final = 409


class Kind(Enum):
    """How a field is parsed."""

    IMEI = "imei"  # a well-formed IMEI -> its core; malformed: invalid_imei
    IMEI_OR_MALFORMED = "imei_or_malformed"  # any string -> core or MALFORMED (authenticity)
    MSISDN = "msisdn"  # -> E.164 int; invalid_msisdn
    CODE = "code"  # passed as given (the backend checks invalid_code_format)
    SLOT = "slot"  # 1..MAX_IMEIS; invalid_slot
    IMEIS = "imeis"  # 1..MAX_IMEIS well-formed IMEIs
    OBSERVED_IMEIS = "observed_imeis"  # 1..MAX_IMEIS strings, malformed ones -> MALFORMED
    FLAG = "flag"
    REASON = "reason"  # 1..200 printable characters

    @property
    def json_type(self) -> str:
        """The JSON type a value of this kind must have."""
        return _JSON_TYPES.get(self, "string")


_JSON_TYPES: Final = {Kind.SLOT: "integer", Kind.IMEIS: "array", Kind.OBSERVED_IMEIS: "array", Kind.FLAG: "boolean"}


@dataclass(frozen=True, slots=True)
class Field:
    """One request field: JSON name (= the backend's parameter name), kind, where it is, default."""

    name: str
    kind: Kind
    where: str = "body"  # body | path | query
    required: bool = True
    default: Any = None
    help: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    """One control-plane operation."""

    name: str  # the log name and the ``eir admin`` command path (words separated by spaces)
    method: str  # HTTP method
    path: str  # HTTP path (with ``{imei}`` for the GET inquiries)
    call: str  # the eir.control.Control method
    fields: tuple[Field, ...]
    summary: str
    refusals: tuple[str, ...] = ()  # the backend's refusal codes (documentation: OpenAPI, --help)

    @property
    def has_body(self) -> bool:
        return any(f.where == "body" for f in self.fields)


def _f(name: str, kind: Kind, help: str, **kw: Any) -> Field:
    return Field(name, kind, help=help, **kw)


_IMEI = _f("imei", Kind.IMEI, "IMEI of the device (14-16 digits)")
_SIM = (_IMEI, _f("owner", Kind.MSISDN, "the owner of the device"),
        _f("slot", Kind.SLOT, "the SIM slot (1-4) of the operator SIM"),
        _f("msisdn", Kind.MSISDN, "the operator SIM's number"))  # add and remove take the same fields
OPERATIONS: Final = (
    Operation("activate", "POST", f"{PREFIX}/activate", "activate", (
        _IMEI, _f("msisdn", Kind.MSISDN, "the number that activates (becomes the owner)"),
        _f("code", Kind.CODE, "the 6-digit activation code")),
        "Activate a device with its one-time code: the number becomes the owner (seed 001).",
        ("invalid_code_format", "unknown_device", "device_blocked", "wrong_code", "too_many_attempts",
         "already_owned", "already_activated", "code_key_missing")),
    Operation("transfer", "POST", f"{PREFIX}/transfer", "transfer", (
        _IMEI, _f("owner", Kind.MSISDN, "the current owner (seller)"),
        _f("buyer", Kind.MSISDN, "the buyer: gets a new one-time code by SMS")),
        "Start a sale: the buyer gets a new activation code; the seller owns until the buyer activates.",
        ("unknown_device", "not_owner", "device_blocked", "already_activated", "code_key_missing")),
    Operation("operator-sim add", "POST", f"{PREFIX}/operator-sim", "add_operator_sim", _SIM,
        "Define an operator SIM for a slot of a cloned device (seed 000).",
        ("unknown_device", "device_blocked", "not_owner", "not_eligible", "invalid_slot", "slot_in_use")),
    Operation("operator-sim remove", "DELETE", f"{PREFIX}/operator-sim", "remove_operator_sim", _SIM,
        "Remove an operator SIM (seed 000).",
        ("unknown_device", "not_owner", "invalid_slot", "no_operator_sim")),
    Operation("claim", "POST", f"{PREFIX}/claim", "claim", (
        _IMEI, _f("msisdn", Kind.MSISDN, "a pre-registry user of the device")),
        "Add a pre-registry device: one of its pre-registry users becomes the owner.",
        ("unknown_device", "device_blocked", "not_pre_registry_user", "already_activated", "already_owned")),
    Operation("recover", "POST", f"{PREFIX}/recover", "recover", (
        _IMEI, _f("old_msisdn", Kind.MSISDN, "the owner's expired or reassigned number"),
        _f("new_msisdn", Kind.MSISDN, "the owner's new number")),
        "Move ownership from an expired or reassigned number to the owner's new number (seed 002).",
        ("unknown_device", "device_blocked", "wrong_previous_number", "not_expired", "unknown_subscriber")),
    Operation("imei-correction", "POST", f"{PREFIX}/imei-correction", "imei_correction", (
        _f("requester", Kind.MSISDN, "the owner filing the ticket"),
        _f("registered_imeis", Kind.IMEIS, "the device's IMEIs as registered (slot order)"),
        _f("observed_imeis", Kind.OBSERVED_IMEIS, "the IMEIs the device really reports (slot order)"),
        _f("apply", Kind.FLAG, "apply an approved correction (default: only answer the outcome)",
           required=False, default=False)),
        "IMEI-correction ticket (seed 004): the outcome, and with apply the device's IMEIs are corrected.",
        ("incorrect_imei_observed", "not_owner", "illegal_device", "already_activated", "full_change_not_allowed",
         "target_owned_by_other", "not_seen_on_all_slots")),
    Operation("repair", "POST", f"{PREFIX}/repair", "repair", (
        _f("owner", Kind.MSISDN, "the owner of the device"),
        _f("old_imei", Kind.IMEI, "the IMEI before the repair"),
        _f("new_imei", Kind.IMEI, "the IMEI after the repair (same model, free)")),
        "Register a repaired device's new IMEI.",
        ("unknown_device", "device_blocked", "not_owner", "model_mismatch", "imei_in_use")),
    Operation("block", "POST", f"{PREFIX}/block", "block", (
        _IMEI, _f("reason", Kind.REASON, "why (stolen, lost, court_order, ...)")),
        "Block a device (stolen / lost report); an unregistered IMEI is put on the block list."),
    Operation("unblock", "POST", f"{PREFIX}/unblock", "unblock", (_IMEI,), "Lift a device's block.",
              ("unknown_device",)),
    Operation("clone-flag", "POST", f"{PREFIX}/clone-flag", "clone_flag", (
        _IMEI, _f("cloned", Kind.FLAG, "true: the IMEI is forged elsewhere; false clears it (and a detection)")),
        "Set or clear the cloned flag of a device.",
        ("unknown_device",)),
    Operation("authenticity", "GET", PREFIX + "/authenticity/{imei}", "authenticity", (
        _f("imei", Kind.IMEI_OR_MALFORMED, "the IMEI to check (any text: a malformed one is an answer)",
           where="path"),),
        "Is this device genuine? (seed 001) Never shows the owner's number."),
    Operation("imei-status", "GET", PREFIX + "/imei-status/{imei}", "imei_status", (
        _f("imei", Kind.IMEI, "the IMEI", where="path"),
        _f("requester", Kind.MSISDN, "the number asking (seen with every IMEI of the device)", where="query")),
        "Previous users of a device bought without a transfer (seed 003), most recent first.",
        ("unknown_device", "device_blocked", "not_seen_with_requester", "owned", "abused")),
)
BY_NAME: Final = {op.name: op for op in OPERATIONS}


class EdgeError(ValueError):
    """A request refused before it reaches the backend: HTTP ``status``, ``code``, the ``field``."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True, slots=True)
class Parsers:
    """The serving rules' identifier knobs (check digit / test IMEIs, home numbering plan)."""

    imei: ImeiPolicy
    plan: NumberingPlan


def _text(name: str, raw: object, code: str, what: str) -> str:
    if not isinstance(raw, str):
        raise EdgeError("invalid_type", f"{name} must be a JSON string ({what})", name)
    if len(raw) > MAX_ID_CHARS:
        raise EdgeError(code, f"{name} is too long to be {what}", name)
    return raw


def _imei(name: str, raw: object, p: Parsers, malformed_ok: bool) -> int:
    if malformed_ok:
        if not isinstance(raw, str):
            raise EdgeError("invalid_type", f"{name} must be a JSON string (an IMEI)", name)
        return MALFORMED if len(raw) > MAX_ID_CHARS else int(parse_imei(raw, p.imei))
    core = parse_imei(_text(name, raw, "invalid_imei", "an IMEI"), p.imei)
    if core == MALFORMED:
        raise EdgeError("invalid_imei", f"{name} is not a valid IMEI (14 digits, 15 with a correct check digit, "
                        "or 16 for an IMEISV)", name)
    return int(core)


def _msisdn(name: str, raw: object, p: Parsers) -> int:
    try:
        return int(parse_msisdn(_text(name, raw, "invalid_msisdn", "a phone number"), p.plan)[0])
    except IdentifierError:
        raise EdgeError("invalid_msisdn", f"{name} is not a phone number (E.164 or national form)", name) from None


def _imeis(name: str, raw: object, p: Parsers, malformed_ok: bool) -> list[int]:
    if not isinstance(raw, list):
        raise EdgeError("invalid_type", f"{name} must be a JSON array of IMEI strings", name)
    if not 1 <= len(raw) <= MAX_IMEIS:
        raise EdgeError("invalid_list", f"{name} must list 1 to {MAX_IMEIS} IMEIs (slot order)", name)
    return [_imei(f"{name}[{i}]", v, p, malformed_ok) for i, v in enumerate(raw)]


def _value(f: Field, raw: object, p: Parsers) -> Any:
    k = f.kind
    if k is Kind.IMEI or k is Kind.IMEI_OR_MALFORMED:
        return _imei(f.name, raw, p, k is Kind.IMEI_OR_MALFORMED)
    if k is Kind.MSISDN:
        return _msisdn(f.name, raw, p)
    if k is Kind.IMEIS or k is Kind.OBSERVED_IMEIS:
        return _imeis(f.name, raw, p, k is Kind.OBSERVED_IMEIS)
    if k is Kind.SLOT:
        # bool is an int in Python; a JSON true is not a slot.
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_IMEIS:
            raise EdgeError("invalid_slot", f"{f.name} must be an integer 1..{MAX_IMEIS}", f.name)
        return raw
    if k is Kind.FLAG:
        if not isinstance(raw, bool):
            raise EdgeError("invalid_type", f"{f.name} must be true or false", f.name)
        return raw
    if k is Kind.REASON:
        if not isinstance(raw, str):
            raise EdgeError("invalid_type", f"{f.name} must be a JSON string", f.name)
        if not 1 <= len(raw.strip()) <= MAX_REASON_CHARS or len(raw) > MAX_REASON_CHARS or not raw.isprintable():
            raise EdgeError("invalid_reason", f"{f.name} must be 1..{MAX_REASON_CHARS} printable characters", f.name)
        return raw.strip()
    # Kind.CODE: a string of any shape; the backend answers invalid_code_format (and counts nothing).
    if not isinstance(raw, str):
        raise EdgeError("invalid_type", f"{f.name} must be a JSON string", f.name)
    return raw


def parse_request(op: Operation, body: object, path: Mapping[str, str], query: Mapping[str, str],
                  p: Parsers) -> dict[str, Any]:
    """The keyword arguments of ``op``'s backend call, or :class:`EdgeError`.

    ``body`` is the decoded JSON body (ignored by operations without body fields). Unknown body or query
    keys are refused (a typo must not silently become a default).
    """
    if op.has_body:
        if not isinstance(body, dict):
            raise EdgeError("invalid_json", "the body must be a JSON object")
        known = {f.name for f in op.fields if f.where == "body"}
        unknown = sorted(k for k in body if k not in known)
        if unknown:
            raise EdgeError("unknown_field", f"unknown field {unknown[0][:40]!r}; expected {sorted(known)}",
                            unknown[0][:40])
    allowed_query = {f.name for f in op.fields if f.where == "query"}
    extra = sorted(k for k in query if k not in allowed_query)
    if extra:
        raise EdgeError("unknown_field", f"unknown query parameter {extra[0][:40]!r}", extra[0][:40])
    sources: dict[str, Mapping[str, Any]] = {"body": body if isinstance(body, dict) else {}, "path": path,
                                              "query": query}
    out: dict[str, Any] = {}
    for f in op.fields:
        src = sources[f.where]
        if f.name not in src or src[f.name] is None:
            if f.required:
                raise EdgeError("missing_field", f"{f.name} is required", f.name)
            out[f.name] = f.default
            continue
        out[f.name] = _value(f, src[f.name], p)
    return out
