"""The admin bearer-token check shared by every protected HTTP route (admin, events, registry).

The token comes from ``EIR_ADMIN_TOKEN`` (:attr:`eir.config.ServiceConfig.admin_token`). Without it the
protected routes refuse everything: there is no "open" mode. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
from typing import Final

#: Refusal kinds of :func:`bearer_refusal`.
DISABLED: Final = "admin_disabled"
UNAUTHORIZED: Final = "unauthorized"
#: The challenge sent with a 401 (RFC 6750).
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="eir-admin"'}


def bearer_refusal(token: str | None, authorization: str) -> str | None:
    """None when the ``Authorization`` header carries the bearer ``token``; otherwise why not.

    :data:`DISABLED` when no token is configured, :data:`UNAUTHORIZED` when the header is missing, uses
    another scheme or carries another token.
    """
    if token is None:
        return DISABLED
    scheme, _, given = authorization.partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))
    return None if ok else UNAUTHORIZED
