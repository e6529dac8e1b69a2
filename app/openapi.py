"""The OpenAPI app class: flask-openapi3 plus a spec that states every error the API can answer."""

from flask_openapi3 import OpenAPI

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
# Every route but the probes shares the per-client rate limit.
UNLIMITED_PREFIXES = ("/health",)
# Where a route lists the headers of its own success response (see `response_headers`).
HEADERS_EXTENSION = "x-dmarket-response-headers"

_INTEGER, _STRING = {"type": "integer", "minimum": 0}, {"type": "string"}
HEADERS = {
    "X-Request-ID": ("This request's id, also in the logs (the client's own when it sent a valid one)", _STRING),
    "WWW-Authenticate": ('`Bearer`, with `error="invalid_token"` and a description when a token was refused', _STRING),
    "Retry-After": ("Seconds to wait before retrying", {"type": "integer", "minimum": 1}),
    "X-RateLimit-Limit": ("Requests allowed in the window that was exceeded", _INTEGER),
    "X-RateLimit-Remaining": ("Requests left in that window", _INTEGER),
    "X-RateLimit-Reset": ("When that window resets (Unix time, seconds)", _INTEGER),
    "Link": ("RFC 8288 links to the first, previous, next and last pages (or the next cursor)", _STRING),
    "X-Total-Count": ("Items matching the query, over all pages (page mode only, not with `cursor`)", _INTEGER),
    "X-Search-Truncated": (
        "`true` when more products match the search than the 1,000 newest it lists (and X-Total-Count counts)",
        _STRING,
    ),
    "X-Next-Cursor": ("Opaque cursor for the next page; absent on the last page", _STRING),
    "ETag": (
        "A strong validator of this answer (a product's: its version, also for If-Match on update or delete); "
        "send it back in If-None-Match to get 304 while it is unchanged",
        _STRING,
    ),
    "Cache-Control": ("`no-cache`: a cache may keep the answer but must revalidate it (If-None-Match)", _STRING),
    "Location": ("URL of the created product", _STRING),
    "Idempotent-Replayed": ("`true` when this is the stored answer to an earlier request with the same key", _STRING),
}
# Headers by status, on every operation that can answer it.
STATUS_HEADERS = {
    "401": ("WWW-Authenticate",),
    "429": ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"),
    "503": ("Retry-After",),
}


NOT_MODIFIED = "304"
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags of answers the client holds (`W/` tags compare weakly, `*` matches any): "
    "304 without a body while the answer would be the same",
    "schema": {"type": "string"},
}


def response_headers(status: int, *always: str, sometimes: tuple[str, ...] = (), not_modified: bool = False) -> dict:
    """`openapi_extensions=` for a route: the headers its `status` response carries (always, or sometimes).

    `not_modified`: the route honours If-None-Match, answering 304 with its ETag and Cache-Control.
    """
    unknown = set(always + sometimes) - HEADERS.keys()
    if unknown:
        raise ValueError(f"no description for the headers {sorted(unknown)}: add them to HEADERS")
    declared = {str(status): {**dict.fromkeys(always, True), **dict.fromkeys(sometimes, False)}}
    if not_modified:
        declared[NOT_MODIFIED] = {"ETag": True, "Cache-Control": True}
    return {HEADERS_EXTENSION: declared}


def _header(name: str, required: bool = True) -> dict:
    description, schema = HEADERS[name]
    return {"description": description, "required": required, "schema": schema}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


class DMarketOpenAPI(OpenAPI):
    def generate_spec_json(self):
        """flask-openapi3 adds a 422 (as an array) to every operation; make it true to our API."""
        super().generate_spec_json()
        for path, item in self.spec_json["paths"].items():
            for operation in item.values():
                responses = operation["responses"]
                takes_input = operation.get("parameters") or operation.get("requestBody")
                if takes_input:
                    responses["422"] = _error("The request is not valid (details name each field)")
                else:
                    responses.pop("422", None)
                if "application/json" in operation.get("requestBody", {}).get("content", {}):
                    responses.setdefault("400", _error("The body is not valid JSON"))
                    responses.setdefault("413", _error("The body is larger than MAX_CONTENT_LENGTH"))
                    responses.setdefault("415", _error("The body is not application/json"))
                if not path.startswith(UNLIMITED_PREFIXES):
                    responses.setdefault("429", _error("Too many requests; see Retry-After"))
                responses.setdefault("500", _error("Unexpected error (logged with the request id)"))
                _document_headers(operation)


def _document_headers(operation: dict) -> None:
    """Every answer carries X-Request-ID; some statuses carry their own; routes declare the rest."""
    declared = operation.pop(HEADERS_EXTENSION, {})
    if NOT_MODIFIED in declared:
        operation["responses"][NOT_MODIFIED] = {"description": "Not modified: the client's ETag still matches"}
        operation.setdefault("parameters", []).append(IF_NONE_MATCH)
    for status, response in operation["responses"].items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = _header("X-Request-ID")
        for name in STATUS_HEADERS.get(status, ()):
            headers[name] = _header(name)
        for name, required in declared.get(status, {}).items():
            headers[name] = _header(name, required)
