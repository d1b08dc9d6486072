"""Service configuration: read once from the command line and the environment into a frozen object.

Precedence is command line > environment > default. Every value is validated here, so the rest of the
service never sees a bad limit. The admin token is kept out of ``repr`` and is never logged: only its
presence is (``admin_token_set``).

Environment variables: ``EIR_ADMIN_TOKEN`` (bearer token of the admin routes; unset = admin refused) and
one per limit, named in :data:`ENV_LIMITS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

DEFAULT_RPC: Final = "127.0.0.1:3869"
DEFAULT_HTTP: Final = "127.0.0.1:8080"
#: ``--state memory``: keep the engine state in memory only (lost on exit; no webhook, no event feed).
STATE_MEMORY: Final = "memory"
MIB: Final = 1 << 20


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the option."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A listening address; ``port`` 0 asks the OS for a free port (tests)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound an interface enforces (SPEC §8: every interface bounds its input sizes)."""

    max_message_bytes: int = MIB  # one RPC message / one HTTP request body
    max_batch: int = 10_000  # items of a check_batch call or a POST /v1/check list
    max_connections: int = 1_024  # open RPC connections
    idle_timeout_s: float = 300.0  # RPC / HTTP keep-alive connection without a complete request
    write_buffer_bytes: int = MIB  # unread answers per RPC client before reading from it stops
    loop_budget: int = 1_000  # decisions per event-loop turn (longer batches yield in between)
    drain_timeout_s: float = 10.0  # SIGTERM: time given to in-flight requests


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``eir serve`` needs, validated."""

    snapshot: Path
    rules: Path
    #: SQLite state file; None = in memory (``--state memory``). ``load_config`` defaults it to
    #: :data:`eir.store.DEFAULT_STATE_PATH`.
    state: Path | None = None
    rpc: Endpoint | None = Endpoint("127.0.0.1", 3869)
    http: Endpoint | None = Endpoint("127.0.0.1", 8080)
    limits: Limits = Limits()
    #: Reload safety bound: the largest allowed increase (absolute, 0..1) of the share of blocked,
    #: cloned or unowned IMEIs between the running snapshot and a new one, unless forced.
    max_share_jump: float = 0.05
    log_level: str = "info"
    admin_token: str | None = field(default=None, repr=False)
    #: Webhook URLs the committed events are POSTed to (``--webhook``; needs a durable state).
    webhooks: tuple[str, ...] = ()

    @property
    def admin_token_set(self) -> bool:
        """Whether admin routes are enabled (what the logs may say about the token)."""
        return self.admin_token is not None

    def describe(self) -> dict[str, Any]:
        """A loggable summary (no secret)."""
        return {
            "snapshot": str(self.snapshot), "rules": str(self.rules),
            "state": str(self.state) if self.state else None,
            "rpc": str(self.rpc) if self.rpc else None, "http": str(self.http) if self.http else None,
            "max_message_bytes": self.limits.max_message_bytes, "max_batch": self.limits.max_batch,
            "max_connections": self.limits.max_connections, "idle_timeout_s": self.limits.idle_timeout_s,
            "max_share_jump": self.max_share_jump, "admin_token_set": self.admin_token_set,
            "webhooks": [safe_url(u) for u in self.webhooks],
        }  # fmt: skip


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (what logs may show)."""
    p = urlsplit(url)
    try:
        port = f":{p.port}" if p.port else ""
    except ValueError:
        port = ""
    return f"{p.scheme}://{p.hostname or ''}{port}{p.path}"


def parse_state(raw: Any) -> Path | None:
    """``--state``: a file path, ``memory`` (None: in memory), or not given (the embedded default)."""
    if raw is None:
        from eir.store import DEFAULT_STATE_PATH

        return DEFAULT_STATE_PATH
    s = str(raw)
    if s.strip().lower() == STATE_MEMORY:
        return None
    if not s.strip():
        raise ConfigError("--state: expected a file path or 'memory'")
    return Path(s)


def parse_webhook(raw: str) -> str:
    """``--webhook``: an absolute http(s) URL with a host."""
    s = str(raw).strip()
    try:
        parts = urlsplit(s)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(f"--webhook: not a valid URL ({e})") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--webhook: expected an http:// or https:// URL with a host, got {safe_url(s)!r}")
    return s


def parse_endpoint(raw: str, option: str) -> Endpoint | None:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` (all interfaces) or ``off`` (transport disabled)."""
    s = raw.strip()
    if s.lower() == "off":
        return None
    host, sep, port = s.rpartition(":")
    if not sep:
        raise ConfigError(f"{option}: expected HOST:PORT or 'off', got {raw!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65_535:
        raise ConfigError(f"{option}: port must be 0..65535, got {raw!r}")
    return Endpoint(host or "0.0.0.0", int(port))


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def conv(s: str) -> int:
        v = int(s.strip().replace("_", ""))
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return v

    return conv


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def conv(s: str) -> float:
        v = float(s)
        if not lo <= v <= hi:  # also rejects NaN
            raise ValueError(f"must be between {lo} and {hi}")
        return v

    return conv


#: option name -> (environment variable, converter). Option names are the ``eir serve`` flags.
ENV_LIMITS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "max_message_bytes": ("EIR_MAX_MESSAGE_BYTES", _int(1_024, 64 * MIB)),
    "max_batch": ("EIR_MAX_BATCH", _int(1, 1_000_000)),
    "max_connections": ("EIR_MAX_CONNECTIONS", _int(1, 1_000_000)),
    "idle_timeout_s": ("EIR_IDLE_TIMEOUT", _float(0.05, 86_400.0)),
    "write_buffer_bytes": ("EIR_WRITE_BUFFER_BYTES", _int(4_096, 256 * MIB)),
    "loop_budget": ("EIR_LOOP_BUDGET", _int(1, 1_000_000)),
    "drain_timeout_s": ("EIR_DRAIN_TIMEOUT", _float(0.0, 3_600.0)),
}
ENV_SHARE_JUMP: Final = ("EIR_MAX_SHARE_JUMP", _float(0.0, 1.0))
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def _pick(name: str, cli: Mapping[str, Any], env: Mapping[str, str], var: str,
          conv: Callable[[str], Any]) -> Any:
    raw = cli.get(name)
    where = f"--{name.replace('_', '-')}"
    if raw is None:
        raw = env.get(var)
        where = var
    if raw is None:
        return None
    try:
        return conv(str(raw))
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e


def load_config(cli: Mapping[str, Any], env: Mapping[str, str]) -> ServiceConfig:
    """Build the configuration from parsed command-line values (None = not given) and the environment."""
    snapshot, rules = cli.get("snapshot"), cli.get("rules")
    if not snapshot or not rules:
        raise ConfigError("--snapshot and --rules are required")
    limits: dict[str, Any] = {}
    for name, (var, conv) in ENV_LIMITS.items():
        v = _pick(name, cli, env, var, conv)
        if v is not None:
            limits[name] = v
    jump = _pick("max_share_jump", cli, env, *ENV_SHARE_JUMP)
    level = str(cli.get("log_level") or env.get("EIR_LOG_LEVEL") or "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level: must be one of {', '.join(LOG_LEVELS)}")
    token = env.get("EIR_ADMIN_TOKEN") or None  # an empty token is no token: admin stays refused
    state = parse_state(cli.get("state"))
    webhooks = tuple(parse_webhook(u) for u in (cli.get("webhook") or ()))
    if len(set(webhooks)) != len(webhooks):
        raise ConfigError("--webhook: the same URL is given twice")
    if webhooks and state is None:
        raise ConfigError("--webhook needs a durable state: not with --state memory")
    return ServiceConfig(
        snapshot=Path(snapshot),
        rules=Path(rules),
        state=state,
        webhooks=webhooks,
        rpc=parse_endpoint(str(cli.get("rpc") or DEFAULT_RPC), "--rpc"),
        http=parse_endpoint(str(cli.get("http") or DEFAULT_HTTP), "--http"),
        limits=Limits(**limits),
        max_share_jump=0.05 if jump is None else jump,
        log_level=level,
        admin_token=token,
    )
