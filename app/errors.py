"""One error shape for every layer: {"code", "message", "details"?}."""

import logging
import re

from flask import Flask, json
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from app.extensions import db

log = logging.getLogger(__name__)

# Werkzeug's names for statuses, as snake_case codes clients can switch on.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    428: "precondition_required",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
    505: "http_version_not_supported",
}
# Headers describing the HTML body that Werkzeug built; ours replaces it.
_BODY_HEADERS = {"content-type", "content-length"}


def code_for(status: int) -> str:
    """The snake_case code for a status (servers in front of the app answer in the same shape)."""
    return _CODES.get(status, "http_error")


class ApiError(Exception):
    """An error the API answers with on purpose; raised anywhere, shaped in one place."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message=None, *, code=None, status=None, details=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Authentication is required."


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(ApiError):
    status, code, message = 404, "not_found", "The resource was not found."


class Conflict(ApiError):
    status, code = 409, "conflict"


class PreconditionFailed(ApiError):
    status, code = 412, "precondition_failed"
    message = "The resource has changed since you read it; fetch it again and retry."


class UnsupportedMediaType(ApiError):
    status, code, message = (
        415,
        "unsupported_media_type",
        "The request body must be JSON (Content-Type: application/json).",
    )


class ValidationFailed(ApiError):
    status, code, message = 422, "validation_error", "The request is not valid."


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"
    message = "A service the API depends on is unavailable; retry shortly."


def error_response(status: int, code: str, message: str, details=None, headers=None):
    body = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = Flask.response_class(json.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# A field name the client made up (an unknown query parameter or key) is input too: shown only when plainly a name.
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _field(loc) -> str:
    return ".".join(str(part) if _FIELD_NAME.match(str(part)) else "(unnamed)" for part in loc) or "body"


def validation_details(exc: ValidationError) -> list[dict]:
    """Field and reason for each problem; the submitted values are never echoed."""
    details = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        field = _field(err["loc"])
        details.append({"field": field, "reason": err["msg"]})
    return details


def validation_error_response(exc: ValidationError):
    """flask-openapi3's validation_error_callback: our shape instead of pydantic's echo."""
    return error_response(422, "validation_error", "The request is not valid.", validation_details(exc))


def _handle_api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _handle_http_exception(exc: HTTPException):
    headers = {}
    if exc.code != 500:
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in _BODY_HEADERS}
    code = exc.code or 500
    if code == 500:
        return _handle_unexpected(exc)
    return error_response(code, code_for(code), exc.description or exc.name, headers=headers)


def _handle_database_error(exc: DBAPIError):
    """The database unreachable (or the connection lost mid-request): a JSON 503; other driver errors are bugs.

    A lost COMMIT lands here too: its fate is unknown, and 503 + Retry-After is the honest
    answer (a retry with the same Idempotency-Key replays it if it was stored after all).
    """
    if not (isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated):
        db.discard_transaction()
        return _handle_unexpected(exc)
    return _handle_database_down(exc)


def _handle_database_down(exc: DBAPIError):
    db.discard_transaction()
    cause = exc.orig or exc
    # The driver's first line names the cause ("too many clients already", "Connection refused").
    reason = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")[:200]
    log.error("database unavailable: %s: %s", cause.__class__.__name__, reason)
    return error_response(
        503,
        "database_unavailable",
        "The database is unavailable; retry shortly.",
        headers={"Retry-After": "5"},
    )


def _handle_unexpected(exc: Exception):
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred; it has been logged.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(DBAPIError, _handle_database_error)
    app.register_error_handler(Exception, _handle_unexpected)
