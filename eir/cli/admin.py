"""``eir admin <operation>``: the registry control plane from the command line (an HTTP client).

Each subcommand is one ``/v1/registry/*`` operation of a running ``eir serve`` (built from
:data:`eir.transports.registry_edge.OPERATIONS`, so the CLI, the routes and the OpenAPI document agree).
The bearer token comes from ``EIR_ADMIN_TOKEN`` only (never an option: it would show in ``ps`` and the
shell history); an activation code left out of the command line is asked for without echo (or read from
standard input), for the same reason. The answer is printed as JSON on standard output.

Exit status: 0 done, 1 refused by the registry (a 4xx answer, its JSON printed), 2 usage error, no token,
service unreachable or not answering (5xx).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

import click
import orjson

from eir.transports.registry_edge import OPERATIONS, Field, Kind, Operation

DEFAULT_URL: Final = "http://127.0.0.1:8080"
TOKEN_ENV: Final = "EIR_ADMIN_TOKEN"
#: Largest answer read (answers are small JSON documents).
MAX_ANSWER_BYTES: Final = 1 << 20
EXIT_REFUSED: Final = 1
EXIT_ERROR: Final = 2


class Failure(click.ClickException):
    """No answer from the service (connection, 5xx, not JSON): exit status 2."""

    exit_code = EXIT_ERROR


def _option_name(f: Field) -> str:
    return "--" + f.name.replace("_", "-")


def _option(f: Field) -> click.Option:
    """The click option of one request field."""
    name = _option_name(f)
    if f.kind is Kind.FLAG and not f.required:
        return click.Option([name + "/--no-" + name[2:]], default=bool(f.default), show_default=True, help=f.help)
    if f.kind is Kind.FLAG:
        return click.Option([name], type=click.BOOL, required=True, metavar="true|false", help=f.help)
    if f.kind is Kind.SLOT:
        return click.Option([name], type=int, required=True, metavar="1-4", help=f.help)
    if f.kind in (Kind.IMEIS, Kind.OBSERVED_IMEIS):
        return click.Option([name], multiple=True, required=True, metavar="IMEI[,IMEI...]",
                            help=f.help + " (repeat the option or separate with commas)")
    if f.kind is Kind.CODE:
        # Better left out of the command line (ps, shell history): then asked for or read from a pipe.
        return click.Option([name], metavar="CODE",
                            help=f.help + " (when left out: asked for without echo, or the first line of a pipe)")
    return click.Option([name], required=f.required, metavar=f.kind.name, help=f.help)


def _value(f: Field, raw: Any) -> Any:
    if f.kind in (Kind.IMEIS, Kind.OBSERVED_IMEIS):
        return [part.strip() for item in raw for part in item.split(",") if part.strip()]
    return raw


def _read_code() -> str:
    """The activation code from the terminal (no echo) or the first line of standard input."""
    if sys.stdin.isatty():
        try:
            return str(click.prompt("Activation code", hide_input=True))
        except click.Abort:
            raise click.UsageError("no activation code given") from None
    line = sys.stdin.readline(64).strip()
    if not line:
        raise click.UsageError("no activation code given (--code, or one line on standard input)")
    return line


def build_request(op: Operation, base_url: str, values: dict[str, Any]) -> tuple[str, bytes | None]:
    """The URL and JSON body of one operation from the CLI's values (keyed by field name)."""
    path = op.path
    query: dict[str, str] = {}
    body: dict[str, Any] = {}
    for f in op.fields:
        v = _value(f, values[f.name])
        if f.where == "path":
            path = path.replace("{" + f.name + "}", urllib.parse.quote(str(v), safe=""))
        elif f.where == "query":
            query[f.name] = str(v)
        else:
            body[f.name] = v
    url = base_url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    return url, orjson.dumps(body) if op.has_body else None


def call(op: Operation, base_url: str, token: str, values: dict[str, Any], timeout: float) -> tuple[int, Any]:
    """Send one operation; ``(HTTP status, decoded JSON answer)``; :class:`Failure` when there is none."""
    url, body = build_request(op, base_url, values)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, method=op.method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read(MAX_ANSWER_BYTES)
        e.close()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Failure(f"cannot reach the service at {base_url}: {reason}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Failure(f"the service answered {status} without JSON") from None
    return status, doc


def _command(op: Operation, name: str) -> click.Command:
    def run(**kw: Any) -> None:
        ctx = click.get_current_context()
        base_url, timeout = ctx.obj["url"], ctx.obj["timeout"]
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise click.UsageError(f"{TOKEN_ENV} is not set: the control plane needs the service's admin token")
        for f in op.fields:
            if f.kind is Kind.CODE and kw[f.name] is None:
                kw[f.name] = _read_code()
        status, doc = call(op, base_url, token, kw, timeout)
        if status >= 500:
            why = f"{doc.get('error', '')}: {doc.get('message', '')}" if isinstance(doc, dict) else ""
            raise Failure(f"the service could not do it ({status} {why})")
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        if status >= 400:
            sys.exit(EXIT_REFUSED)

    refusals = ", ".join(op.refusals) or "none (every answer is a status)"
    epilog = f"{op.method} {op.path}. Refusal codes: {refusals}."
    return click.Command(name, callback=run, params=[_option(f) for f in op.fields], help=op.summary,
                         epilog=epilog, short_help=op.summary.split(":")[0].split(" (")[0])


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter("expected http(s)://HOST:PORT")
    return value


@click.group("admin")
@click.option("--url", default=DEFAULT_URL, show_default=True, envvar="EIR_ADMIN_URL", callback=_check_url,
              help="Base URL of the running `eir serve` HTTP listener (env EIR_ADMIN_URL).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=600), default=30.0, show_default=True,
              help="Seconds to wait for the answer.")
@click.pass_context
def admin(ctx: click.Context, url: str, timeout: float) -> None:
    """Registry control plane: activation, transfer, operator SIMs, recovery, corrections, inquiries.

    Talks to a running `eir serve` with the bearer token from EIR_ADMIN_TOKEN. Prints the JSON answer;
    exit status 0 done, 1 refused (the answer says why in "error"), 2 usage or connection error.
    """
    ctx.obj = {"url": url, "timeout": timeout}


_GROUP_HELP: Final = {"operator-sim": "Operator SIMs of a cloned device (seed 000): add or remove one."}


def _register() -> None:
    groups: dict[str, click.Group] = {}
    for op in OPERATIONS:
        words = op.name.split(" ")
        if len(words) == 1:
            admin.add_command(_command(op, op.name))
            continue
        group = groups.get(words[0])
        if group is None:
            group = groups[words[0]] = click.Group(words[0], help=_GROUP_HELP.get(words[0]))
            admin.add_command(group)
        group.add_command(_command(op, words[1]))


_register()
