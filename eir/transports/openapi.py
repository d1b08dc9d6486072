"""The OpenAPI 3.0 description of the HTTP API (served as ``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from eir.model import Reason, Verdict
from eir.transports.registry_edge import (
    EDGE_ERRORS,
    MAX_IMEIS,
    MAX_REASON_CHARS,
    OPERATIONS,
    STATUS,
    Field,
    Kind,
    Operation,
)


def _problem_ref(desc: str) -> dict[str, Any]:
    return {"description": desc,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}


def _json(schema: dict[str, Any], desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _query_param(name: str, required: bool, desc: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema}


_REGISTRY_ERROR = {
    "type": "object", "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "the refusal code (docs/control-plane.md)"},
        "message": {"type": "string", "description": "English text; never a number, code or token"},
        "field": {"type": "string", "description": "the request field at fault (request errors only)"},
    },
}  # fmt: skip
_IMEI_PATTERN = "^(imei-|imeisv-)?[0-9]{14,16}$"
_FIELD_SCHEMAS: dict[Kind, dict[str, Any]] = {
    Kind.IMEI: {"type": "string", "pattern": _IMEI_PATTERN},
    Kind.IMEI_OR_MALFORMED: {"type": "string"},
    Kind.MSISDN: {"type": "string", "maxLength": 64, "example": "09121234567"},
    Kind.CODE: {"type": "string", "pattern": "^[1-9][0-9]{5}$", "format": "password"},
    Kind.SLOT: {"type": "integer", "minimum": 1, "maximum": MAX_IMEIS},
    Kind.IMEIS: {"type": "array", "minItems": 1, "maxItems": MAX_IMEIS,
                 "items": {"type": "string", "pattern": _IMEI_PATTERN}},
    Kind.OBSERVED_IMEIS: {"type": "array", "minItems": 1, "maxItems": MAX_IMEIS, "items": {"type": "string"}},
    Kind.FLAG: {"type": "boolean"},
    Kind.REASON: {"type": "string", "minLength": 1, "maxLength": MAX_REASON_CHARS},
}  # fmt: skip


def _field_schema(f: Field) -> dict[str, Any]:
    out = {**_FIELD_SCHEMAS[f.kind], "description": f.help}
    if not f.required:
        out["default"] = f.default
    return out


def _registry_operation(op: Operation) -> dict[str, Any]:
    """One control-plane operation: parameters/body from its fields, one response per refusal status."""
    by_status: dict[int, list[str]] = {400: [c for c in EDGE_ERRORS if c != "body_too_large"],
                                       401: ["unauthorized"], 403: ["admin_disabled"],
                                       503: ["not_ready", "state_unavailable"]}
    if op.has_body:
        by_status[413] = ["body_too_large"]
    for code in op.refusals:
        by_status.setdefault(STATUS[code], []).append(code)
    err = {"$ref": "#/components/schemas/RegistryError"}
    responses: dict[str, Any] = {"200": _json({"$ref": "#/components/schemas/RegistryResult"},
                                              "done: what changed (or the inquiry's answer)")}
    for status in sorted(by_status):
        responses[str(status)] = _json(err, " / ".join(by_status[status]))
    doc: dict[str, Any] = {
        "operationId": "Registry" + op.call.title().replace("_", ""), "tags": ["registry"], "summary": op.summary,
        "security": [{"bearer": []}], "responses": responses,
        "parameters": [{"name": f.name, "in": f.where, "required": True, "description": f.help,
                        "schema": _FIELD_SCHEMAS[f.kind]} for f in op.fields if f.where != "body"],
    }  # fmt: skip
    body = [f for f in op.fields if f.where == "body"]
    if body:
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": [f.name for f in body if f.required],
            "properties": {f.name: _field_schema(f) for f in body}}}}}
    return doc


def registry_paths() -> dict[str, dict[str, Any]]:
    """The ``/v1/registry/*`` paths (eir.transports.registry_http), built from the operations table."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _registry_operation(op)
    return paths


def openapi_document() -> dict[str, Any]:
    """The document; built once per application."""
    check_query = {
        "type": "object", "required": ["imei"], "additionalProperties": False,
        "properties": {
            "imei": {"type": "string", "description": "14-16 digits, optional imei-/imeisv- prefix"},
            "msisdn": {"type": "string", "nullable": True, "description": "any common form; normalised to E.164"},
            "imsi": {"type": "string", "nullable": True, "description": "used for the MSISDN when none is given"},
            "slot": {"type": "integer", "minimum": 1, "maximum": 16, "nullable": True},
            "time": {"nullable": True, "description": "ISO 8601 with offset, or epoch seconds; null = now",
                     "oneOf": [{"type": "string"}, {"type": "number"}]},
        },
    }  # fmt: skip
    decision = {
        "type": "object",
        "properties": {
            "imei": {"type": "string", "nullable": True, "description": "14-digit core; null when malformed"},
            "msisdn": {"type": "string", "nullable": True}, "slot": {"type": "integer"},
            "roamer": {"type": "boolean"},
            "time": {"type": "string", "format": "date-time"}, "time_epoch": {"type": "integer"},
            "verdict": {"type": "string", "enum": [v.name for v in Verdict]},
            "status": {"type": "string", "enum": [v.status for v in Verdict]},
            "reason": {"type": "string", "enum": [r.value for r in Reason]},
            "deadline": {"type": "string", "format": "date-time", "nullable": True},
            "deadline_epoch": {"type": "integer", "nullable": True},
        },
    }  # fmt: skip
    problem = {
        "type": "object",
        "properties": {
            "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
            "cause": {"type": "string"},
            "invalidParams": {"type": "array", "items": {"type": "object", "properties": {
                "param": {"type": "string"}, "reason": {"type": "string"}}}},
        },
    }  # fmt: skip
    doc_obj = {"type": "object"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "EIR decision engine", "version": "1",
                 "description": "3GPP TS 29.511 N5g-eir equipment identity check, the full-decision JSON API, "
                                "health, readiness, metrics, admin and the registry control plane."},
        "paths": {
            "/n5g-eir-eic/v1/equipment-status": {"get": {
                "operationId": "GetEquipmentStatus", "tags": ["N5g-eir"],
                "parameters": [
                    _query_param("pei", True, "IMEI/IMEISV PEI", r"^(imei-[0-9]{15}|imeisv-[0-9]{16})$"),
                    _query_param("supi", False, "imsi-<digits>: MSISDN looked up in the snapshot",
                                 "^imsi-[0-9]{5,15}$"),
                    _query_param("gpsi", False, "msisdn-<digits>", "^msisdn-[0-9]{5,15}$"),
                ],
                "responses": {
                    "200": _json({"type": "object", "required": ["status"], "properties": {"status": {
                        "type": "string", "enum": ["WHITELISTED", "GREYLISTED", "BLACKLISTED"]}}},
                        "EirResponseData"),
                    "400": _problem_ref("MANDATORY_QUERY_PARAM_MISSING / MANDATORY_QUERY_PARAM_INCORRECT / "
                                        "INVALID_QUERY_PARAM"),
                    "503": _problem_ref("NOT_READY: no snapshot loaded yet"),
                },
            }},
            "/v1/check": {"post": {
                "operationId": "Check", "tags": ["decisions"],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [check_query, {"type": "array", "items": check_query, "maxItems": 10_000}]}}}},
                "responses": {
                    "200": _json({"oneOf": [decision, {"type": "array", "items": decision}]},
                                 "the decision (or decisions, in order)"),
                    "400": _problem_ref("INVALID_MSG_FORMAT (invalidParams names the item and field)"),
                    "413": _problem_ref("TOO_LARGE: body or list over the limit"),
                    "503": _problem_ref("NOT_READY"),
                },
            }},
            "/healthz": {"get": {"operationId": "Health", "responses": {"200": _json(doc_obj, "alive")}}},
            "/readyz": {"get": {"operationId": "Ready", "responses": {
                "200": _json(doc_obj, "serving: snapshot and rules identity"),
                "503": _json(doc_obj, "no snapshot loaded yet")}}},
            "/metrics": {"get": {"operationId": "Metrics", "responses": {"200": {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "OpenApi", "responses": {"200": _json(doc_obj, "this document")}}},
            "/v1/events": {"get": {
                "operationId": "Events", "tags": ["events"], "security": [{"bearer": []}],
                "description": "Committed warning events, oldest first (served with --state only; "
                               "see eir.transports.events_http).",
                "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": t}}
                               for n, t in (("after", "integer"), ("limit", "integer"), ("timeout", "number"))],
                "responses": {"200": _json(doc_obj, '{"events": [...], "next": seq, "committed_seq": seq}'),
                              "400": _problem_ref("INVALID_QUERY_PARAM"),
                              "401": _problem_ref("missing or wrong bearer token"),
                              "503": _problem_ref("STATE_UNAVAILABLE")},
            }},
            "/v1/admin/reload": {"post": {
                "operationId": "AdminReload", "tags": ["admin"], "security": [{"bearer": []}],
                "parameters": [{"name": "force", "in": "query", "required": False,
                                "description": "skip the share-jump safety check",
                                "schema": {"type": "boolean", "default": False}}],
                "responses": {
                    "200": _json(doc_obj, "swapped: the new snapshot/rules identity and IMEI shares"),
                    "401": _problem_ref("missing or wrong bearer token"),
                    "403": _problem_ref("ADMIN_DISABLED: EIR_ADMIN_TOKEN is not set"),
                    "409": _problem_ref("RELOAD_REFUSED (safety check) / RELOAD_IN_PROGRESS"),
                    "422": _problem_ref("RELOAD_FAILED: checksum, format or rule error; the old bundle serves"),
                },
            }},
            **registry_paths(),
        },
        "components": {
            "schemas": {"ProblemDetails": problem, "CheckQuery": check_query, "Decision": decision,
                        "RegistryError": _REGISTRY_ERROR,
                        "RegistryResult": {"type": "object", "additionalProperties": True,
                                           "description": "the backend's answer (docs/control-plane.md)"}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
