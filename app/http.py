"""Request plumbing: request ids, the access log, security headers, exact JSON numbers, the body guard."""

import base64
import functools
import hashlib
import inspect
import ipaddress
import json
import logging
import os
import re
import time
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Request, current_app, g, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import ClosingIterator

from app.errors import ApiError, UnsupportedMediaType, ValidationFailed

access_log = logging.getLogger("app.access")
_ACCESS_FORMAT = "%s %s %s %.1fms %s"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Health probes and metrics scrapes come every few seconds forever: at INFO they would bury the traffic.
PROBE_PATHS = frozenset({"/health", "/health/ready", "/metrics"})
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
_FIXED_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
# Pages (Swagger UI, the local sign-in page): our own assets; inline scripts only by hash.
HTML_CSP = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _integer(text: str):
    # Python refuses int() of 4300+ digits; such a number is still JSON, just far out of range.
    return int(text) if len(text) <= 100 else Decimal(text)


class _ExactJSON:
    """Request bodies: decimals as Decimal (19.99 stays 19.99), no NaN/Infinity, bounded nesting."""

    @staticmethod
    def loads(s, **kwargs):
        try:
            return json.loads(s, parse_float=Decimal, parse_int=_integer, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class ApiRequest(Request):
    """Flask assigns `app.json` to every request; bodies must keep the exact decoder instead."""

    @property
    def json_module(self):
        return _ExactJSON

    @json_module.setter
    def json_module(self, _value):
        pass


class TrustedProxies(ProxyFix):
    """ProxyFix reading the last N hops of X-Forwarded-* by their commas, as our proxies append them.

    Werkzeug parses the header as a quoted list, so a client's stray `"` before what our proxies
    appended empties the whole list, and the client's address with it. Each proxy only appends
    `, value`, so the last N comma-separated entries are ours whatever came before them. With
    fewer entries than proxies (a hop that sets rather than appends), the leftmost is the farthest
    one a proxy of ours wrote. What is not an address (or a scheme) is never taken: the nearest
    hop's address stands in for it.
    """

    def _entries(self, trusted: int, value: str | None) -> list[str]:
        """Our proxies' entries, farthest first."""
        if not (trusted and value):
            return []
        entries = [entry.strip() for entry in value.rsplit(",", trusted)]
        return entries[-trusted:] if len(entries) > trusted else entries

    def _get_real_value(self, trusted: int, value: str | None) -> str | None:
        entries = self._entries(trusted, value)
        return entries[0] if entries else None

    def __call__(self, environ, start_response):
        hops = self._entries(self.x_for, environ.get("HTTP_X_FORWARDED_FOR"))
        if hops and not _is_address(hops[0]):
            nearest = next((hop for hop in hops if _is_address(hop)), None)
            if nearest is None:
                environ.pop("HTTP_X_FORWARDED_FOR")
            else:
                environ["HTTP_X_FORWARDED_FOR"] = nearest
        if self._get_real_value(self.x_proto, environ.get("HTTP_X_FORWARDED_PROTO")) not in (None, "http", "https"):
            environ.pop("HTTP_X_FORWARDED_PROTO")
        return super().__call__(environ, start_response)


# nginx's client_max_body_size (nginx/client-limits.conf): no proxy of ours sends a larger body.
DRAIN_MAX_BYTES = 1 << 20


class DrainedBodies:
    """WSGI middleware: what is left of a request body is read before the connection closes.

    A refusal (401, 413, 415) comes before the body is read, and gunicorn then closes the
    connection with the rest unread: a proxy still writing it meets a broken pipe and answers
    502 instead of our status. Reading the rest lets it finish writing and read our answer.
    Only where the server ends the body itself (gunicorn's `wsgi.input_terminated`), up to
    DRAIN_MAX_BYTES: a larger body is never read for nothing.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        answer = self.app(environ, start_response)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        has_body = chunked or environ.get("CONTENT_LENGTH", "") not in ("", "0")
        if not (has_body and environ.get("wsgi.input_terminated")):
            return answer
        return ClosingIterator(answer, functools.partial(_drain, environ["wsgi.input"]))


def _drain(stream) -> None:
    left = DRAIN_MAX_BYTES
    while left > 0 and (chunk := stream.read(min(left, 65536))):
        left -= len(chunk)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def public_url(endpoint: str, **values) -> str:
    """An absolute URL of one of our routes, from PUBLIC_URL: never from the client-chosen Host header."""
    path = url_for(endpoint, **values)[len(request.script_root) :]
    return current_app.config["PUBLIC_URL"] + path


def _start_request() -> None:
    g.start = time.perf_counter()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    # 128 random bits as 32 hex digits (a uuid4's shape, at a fifth of its cost).
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()


def _takes_body(endpoint: str | None) -> bool:
    view = current_app.view_functions.get(endpoint)
    if view is None:
        return False
    cache = current_app.extensions.setdefault("dmarket.body_views", {})
    if endpoint not in cache:
        cache[endpoint] = "body" in inspect.signature(inspect.unwrap(view)).parameters
    return cache[endpoint]


def _read_body_within_limit() -> None:
    """413 for a body past MAX_CONTENT_LENGTH, whether or not it announced its length.

    Werkzeug refuses an oversize Content-Length up front, but a chunked body (no
    Content-Length) is only cut off at the limit, which then read as broken JSON (400).
    """
    data = request.get_data(cache=True)  # read through Werkzeug's stream, which stops at the limit
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()


def require_json_object() -> None:
    """A body must be a JSON object sent as JSON: 415, 400 or 422 before validation runs."""
    if request.method not in _BODY_METHODS or not _takes_body(request.endpoint):
        return
    if not request.is_json:
        raise UnsupportedMediaType()
    _read_body_within_limit()
    data = request.get_json(silent=True)
    if data is None and request.get_data(cache=True).strip() not in (b"null",):
        raise ApiError("The request body is not valid JSON.", code="invalid_json", status=400)
    if not isinstance(data, dict):
        raise ValidationFailed(details=[{"field": "body", "reason": "must be a JSON object"}])


def _finish_request(response):
    """The one after-request hook: request id, security headers, then the access log line."""
    headers = response.headers
    headers["X-Request-ID"] = g.get("request_id", "-")
    if response.status_code == 308:
        _relative_location(headers)
    _security_headers(response)
    if access_log.isEnabledFor(logging.INFO):
        _log_access(response)
    return response


def _relative_location(headers) -> None:
    """Werkzeug's slash redirect (`/openapi` to `/openapi/`) names the client's Host header: keep its path only."""
    target = urlsplit(headers.get("Location", ""))
    if target.netloc:
        headers["Location"] = urlunsplit(("", "", target.path, target.query, target.fragment))


def _log_access(response) -> None:
    """One line per request, its record built and handed to the handlers directly.

    `Logger.log` would look up the caller's frame for every record (a fifth of the line's
    cost); the caller is known, so it is given.
    """
    req = request._get_current_object()  # one lookup through the context-local proxy, not eight
    path = req.path
    if not path.isprintable():  # a decoded %0A would start a line of the client's own in a text log
        path = path.encode("unicode_escape").decode("ascii")
    level = logging.DEBUG if path in PROBE_PATHS else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    status = response.status_code
    elapsed_ms = (time.perf_counter() - g.get("start", time.perf_counter())) * 1000
    extra = {
        "request_id": g.get("request_id", "-"),
        "method": req.method,
        "path": path,
        "status": status,
        "duration_ms": round(elapsed_ms, 1),
        "remote_addr": req.remote_addr,
    }
    args = (req.method, path, status, elapsed_ms, req.remote_addr or "-")
    access_log.handle(
        access_log.makeRecord(
            access_log.name, level, __file__, _ACCESS_LINE, _ACCESS_FORMAT, args, None, "_log_access", extra
        )
    )


_ACCESS_LINE = _log_access.__code__.co_firstlineno


def _script_hashes(body: bytes) -> str:
    digests = (hashlib.sha256(script).digest() for script in _INLINE_SCRIPT.findall(body))
    return "".join(f" 'sha256-{base64.b64encode(d).decode()}'" for d in digests)


def _security_headers(response) -> None:
    """The same fixed set on every answer (added only where a view did not set its own), and a CSP."""
    headers = response.headers
    present = {name.lower() for name, _value in headers.items()}
    for name, value in _FIXED_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    page = response.mimetype == "text/html"  # parsed from Content-Type: once
    if "referrer-policy" not in present:
        # Pages (the sign-in form, Swagger UI) must let the browser send its real Origin on their own
        # POSTs: under no-referrer Chromium sends `Origin: null`, which the cross-site check refuses.
        headers.add("Referrer-Policy", "same-origin" if page else "no-referrer")
    if "content-security-policy" not in present:
        if not page:
            headers.add("Content-Security-Policy", JSON_CSP)
        elif not response.direct_passthrough:
            headers.add("Content-Security-Policy", HTML_CSP.format(hashes=_script_hashes(response.get_data())))
        else:
            headers.add("Content-Security-Policy", HTML_CSP.format(hashes=""))
    if request.is_secure and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def register_request_hooks(app: Flask) -> None:
    app.request_class = ApiRequest
    app.wsgi_app = DrainedBodies(app.wsgi_app)
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Only the last N hops are ours: X-Forwarded-* beyond them could be forged by the client.
        # Only the address and the scheme: every proxy passes the Host header on as the client sent it, and
        # X-Forwarded-Host is one a load balancer may pass on without appending (the client's own then).
        app.wsgi_app = TrustedProxies(app.wsgi_app, x_for=proxies, x_proto=proxies)
    app.before_request(_start_request)
    app.after_request(_finish_request)


def register_body_guard(app: Flask) -> None:
    """Registered after authentication, so 401 comes before 415/422."""
    app.before_request(require_json_object)
