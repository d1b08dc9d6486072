"""Identifier parsing at the edge: IMEI, MSISDN, IMSI, slot (SPEC §2).

Everything inside the engine works on plain ints produced here: an IMEI is its 14-digit core as an int,
an MSISDN is its E.164 digits as an int, an IMSI is its digits as an int. Parsing happens once, where bytes
enter the process (snapshot build, replay reader, transports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, NewType

ImeiCore = NewType("ImeiCore", int)
Msisdn = NewType("Msisdn", int)
Imsi = NewType("Imsi", int)

#: Returned by :func:`parse_imei` for a malformed IMEI (a decision, not an error: DENY MALFORMED_IMEI).
MALFORMED: Final = ImeiCore(-1)
#: The "no subscriber" MSISDN (unknown subscriber: neither a usable MSISDN nor a known IMSI).
NO_MSISDN: Final = Msisdn(0)

MAX_SLOT: Final = 16
_ASCII_DIGITS: Final = frozenset("0123456789")
# Luhn doubling as a bytes.translate table: digit -> 2*digit with 9 subtracted when over 9.
_DOUBLE_DIGITS: Final = bytes.maketrans(b"0123456789", b"0246813579")
_SLOTS: Final = {str(n): n for n in range(1, 17)} | {"": 1}


class IdentifierError(ValueError):
    """An identifier that cannot be normalised (a request error, unlike a malformed IMEI)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}: {reason}: {value!r}")
        self.field = field
        self.value = value
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImeiPolicy:
    """The two IMEI knobs of a rule set (`[imei]`)."""

    deny_invalid_check_digit: bool = True
    deny_test_imeis: bool = True


def luhn_check_digit(core14: str) -> int:
    """GSMA TS.06 check digit of a 14-digit IMEI core (``49015420323751`` -> 8)."""
    # From the right the rightmost digit is doubled, then every second one: for 14 digits that is every
    # odd position from the left. Summing ASCII bytes (minus 14 * '0') keeps the loop in C.
    b = core14.encode()
    total = sum(b[0:14:2]) + sum(b[1:14:2].translate(_DOUBLE_DIGITS)) - 48 * 14
    return (10 - total % 10) % 10


def _is_ascii_digits(s: str) -> bool:
    # str.isdigit() accepts Persian/Arabic-Indic and superscript digits; the network never sends those.
    return s.isascii() and s.isdigit()


def parse_imei(raw: str, policy: ImeiPolicy) -> ImeiCore:
    """Normalise an IMEI/IMEISV string to its 14-digit core, or :data:`MALFORMED`.

    Accepts 14 digits (core), 15 (core + Luhn check digit), 16 (IMEISV: core + 2-digit software
    version), each optionally prefixed with ``imei-`` or ``imeisv-`` (3GPP PEI form).
    """
    # The common forms: 15 ASCII digits, bare or as the 3GPP PEI "imei-<15 digits>".
    s = raw[5:] if len(raw) == 20 and raw.startswith("imei-") else raw
    if len(s) != 15 or not s.isdigit() or not s.isascii():
        return _parse_imei_other(raw, policy)
    # Luhn over all 15 (the check digit in the plain positions): the ASCII offsets (15 * 48) are a
    # multiple of 10, so valid means a sum % 10 == 0.
    core = s[:14]
    if policy.deny_invalid_check_digit:
        b = s.encode()
        if (sum(b[0:15:2]) + sum(b[1:14:2].translate(_DOUBLE_DIGITS))) % 10:
            return MALFORMED
    if policy.deny_test_imeis and core.count(core[0]) == 14:
        return MALFORMED
    return ImeiCore(int(core))


def _parse_imei_other(raw: str, policy: ImeiPolicy) -> ImeiCore:
    s = raw.strip()
    low = s[:7].lower()
    if low.startswith("imeisv-"):
        s = s[7:]
    elif low.startswith("imei-"):
        s = s[5:]
    n = len(s)
    if n < 14 or n > 16 or not _is_ascii_digits(s):
        return MALFORMED
    core = s[:14]
    if n == 15 and policy.deny_invalid_check_digit and luhn_check_digit(core) != ord(s[14]) - 48:
        return MALFORMED
    if policy.deny_test_imeis and core.count(core[0]) == 14:
        return MALFORMED
    return ImeiCore(int(core))


def format_imei(core: int) -> str:
    """The 14-digit text of an IMEI core (leading zeros kept)."""
    return f"{core:014d}"


def imei15(core: int) -> str:
    """The 15-digit IMEI (core + check digit), as printed on boxes."""
    s = f"{core:014d}"
    return s + str(luhn_check_digit(s))


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """Home numbering plan: country code and home MCCs (from the rule set's `[policy]`)."""

    country_code: str = "98"
    home_mccs: frozenset[str] = frozenset({"432"})
    #: Iranian mobile numbers: 10-digit national significant number starting with 9 (0 = none known).
    #: Derived from the country code, computed once (it is read on every MSISDN parse).
    national_mobile_length: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "national_mobile_length", 10 if self.country_code == "98" else 0)


def parse_msisdn(raw: str, plan: NumberingPlan) -> tuple[Msisdn, bool]:
    """Normalise an MSISDN to E.164 digits; returns ``(msisdn, is_home)``.

    ``09121234567``, ``9121234567``, ``+989121234567``, ``00989121234567`` and ``989121234567`` all
    become ``989121234567`` for country code 98. Other E.164 numbers (8-15 digits) are kept as given.
    Raises :class:`IdentifierError` when the number cannot be normalised.
    """
    if raw.isdigit() and raw.isascii():
        # Digits only (the usual case): no prefix or blanks to strip, and what is left is digits.
        s = raw
        if s[0] == "0":
            s = s[2:] if s[1:2] == "0" else plan.country_code + s[1:]
        elif len(s) == plan.national_mobile_length and s[0] == "9":
            s = plan.country_code + s
        if 8 <= len(s) <= 15 and s[0] != "0":
            return Msisdn(int(s)), s.startswith(plan.country_code)
        raise IdentifierError("msisdn", raw, "not an E.164 number")
    s = _msisdn_other(raw, plan)
    if not _is_ascii_digits(s) or not 8 <= len(s) <= 15 or s[0] == "0":
        raise IdentifierError("msisdn", raw, "not an E.164 number")
    return Msisdn(int(s)), s.startswith(plan.country_code)


def _msisdn_other(raw: str, plan: NumberingPlan) -> str:
    s = raw.strip()
    if s.lower().startswith("msisdn-"):
        s = s[7:]
    if s.startswith("+"):
        return s[1:]
    if s.startswith("00"):
        return s[2:]
    if s.startswith("0"):
        return plan.country_code + s[1:]  # national trunk prefix
    if len(s) == plan.national_mobile_length and s.startswith("9"):
        return plan.country_code + s  # national significant number without trunk prefix
    return s


def is_home_msisdn(msisdn: int, plan: NumberingPlan) -> bool:
    """Whether a normalised MSISDN belongs to the home country."""
    return str(msisdn).startswith(plan.country_code)


def national_format(msisdn: int, plan: NumberingPlan) -> str:
    """``989121234567`` -> ``09121234567`` for home numbers, ``+<digits>`` otherwise."""
    s = str(msisdn)
    cc = plan.country_code
    if s.startswith(cc):
        return "0" + s[len(cc) :]
    return "+" + s


def parse_imsi(raw: str) -> Imsi:
    """Parse an IMSI: 6-15 digits, optional ``imsi-`` prefix, MCC not starting with 0."""
    s = raw.strip()
    if s.lower().startswith("imsi-"):
        s = s[5:]
    if not _is_ascii_digits(s) or not 6 <= len(s) <= 15 or s[0] == "0":
        raise IdentifierError("imsi", raw, "not an IMSI (6-15 digits, MCC 2xx-9xx)")
    return Imsi(int(s))


def imsi_is_home(imsi: int, plan: NumberingPlan) -> bool:
    """Whether the IMSI's MCC (first 3 digits) is a home MCC."""
    return str(imsi)[:3] in plan.home_mccs


def parse_slot(raw: object) -> int:
    """A 1-based SIM slot; empty/None means slot 1."""
    if raw is None:
        return 1
    if raw.__class__ is str:
        got = _SLOTS.get(raw)
        if got is not None:
            return got
    if isinstance(raw, bool):
        raise IdentifierError("slot", raw, "not an integer")
    if isinstance(raw, int):
        slot = raw
    elif isinstance(raw, str) and _is_ascii_digits(raw.strip()):
        slot = int(raw)
    else:
        raise IdentifierError("slot", raw, "not an integer")
    if not 1 <= slot <= MAX_SLOT:
        raise IdentifierError("slot", raw, f"outside 1..{MAX_SLOT}")
    return slot
