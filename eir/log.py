"""Structured logging: one JSON object per line, secrets never written.

Use the standard :mod:`logging` API with lazy ``%`` arguments (formatted only when the record is
emitted) and put structured fields in ``extra=fields(...)``::

    log.info("reload refused: %s", why, extra=fields(checksum=meta.checksum))

Nothing is configured on import: :func:`configure` installs the JSON handler (``eir serve`` calls it).
Field names that may carry a secret (tokens, activation codes, keys, authorization headers) are written
as ``"[redacted]"`` whatever their value, so a careless call cannot leak one; say whether a token is
set with a boolean field such as ``admin_token_set``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Mapping
from typing import IO, Any, Final

import orjson

FIELDS_ATTR: Final = "eir_fields"
REDACTED: Final = "[redacted]"
#: Substrings of field names whose values are never logged.
SECRET_MARKERS: Final = ("token", "code", "secret", "password", "authorization", "key")
#: Field names that contain a marker but only say whether a secret is present.
ALLOWED_FIELDS: Final = frozenset({"admin_token_set", "status_code", "code_key_set", "error_code"})
_RESERVED: Final = frozenset({"ts", "level", "logger", "msg"})


def fields(**kv: Any) -> dict[str, Any]:
    """``extra=`` argument carrying structured fields for one record."""
    return {FIELDS_ATTR: kv}


def is_secret_field(name: str) -> bool:
    """Whether a field of this name is redacted."""
    low = name.lower()
    return low not in ALLOWED_FIELDS and any(m in low for m in SECRET_MARKERS)


def _clean(kv: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kv.items():
        key = f"field_{k}" if k in _RESERVED else k
        out[key] = REDACTED if is_secret_field(k) else v
    return out


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``ts``, ``level``, ``logger``, ``msg``, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, FIELDS_ATTR, None)
        if isinstance(extra, Mapping):
            doc.update(_clean(extra))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        # default=str: a field of an unexpected type (Path, enum) is written as text, never dropped.
        return orjson.dumps(doc, default=str).decode()


def configure(level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record (ours, aiohttp's, asyncio's) to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log would write one line per request: the hot path logs nothing.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
