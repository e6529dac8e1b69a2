"""The OpenAPI app class: flask-openapi3 plus a spec that states every error the API can answer.

The document is a contract that clients are generated from (tests/test_clients.py): readable
operation ids, every header the API reads or sends, and schemas every generator and JSON
Schema implementation reads the same way. It is built once, on its first request.
"""

import copy
import re
from collections import Counter

from flask_openapi3 import OpenAPI

from app.console import OAUTH_SCHEME, oauth_endpoints, oauth_scheme

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
    "Location": ("URL of the created product (201), or where the browser goes next (302, 303)", _STRING),
    "Idempotent-Replayed": ("`true` when this is the stored answer to an earlier request with the same key", _STRING),
    "Set-Cookie": ("The browser session (`dmarket_session`, HttpOnly), set or cleared by the sign-in pages", _STRING),
}
# Request headers the API reads besides Authorization and a body's Content-Type.
REQUEST_HEADERS_EXTENSION = "x-dmarket-request-headers"
REQUEST_HEADERS = {
    "X-Request-ID": (
        "An id for this request, echoed in X-Request-ID and logged: kept when it is 1-128 of `A-Z a-z 0-9 . _ -`, "
        "otherwise replaced by one the API makes",
        _STRING,
    ),
    "If-Match": (
        "The product's ETag as read (GET, create or update answers carry it; `*` matches any): the change is made "
        "only while the product is unchanged, else 412 `precondition_failed`",
        _STRING,
    ),
}
# Paths are relative to the host that serves the document (it does not know its public name).
SERVERS = [{"url": "/", "description": "The server that serves this document"}]
LICENSE = {"name": "MIT", "identifier": "MIT"}
# A schema no value fits, for a field that must be absent: `not: {}` says so to readers and validators,
# and "a string and a number at once" is what openapi-typescript types as `never`. The plainer `false`
# and `enum: []` are refused by openapi-python-client.
NEVER = {"not": {}, "allOf": [{"type": "string"}, {"type": "number"}]}

# Headers that every success or redirect of an operation with this tag may carry.
TAG_HEADERS = {"sign-in": ("Set-Cookie",)}
# Headers by status, on every operation that can answer it.
STATUS_HEADERS = {
    "302": ("Location",),
    "303": ("Location",),
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


def request_headers(*names: str) -> dict:
    """`openapi_extensions=` for a route: the optional request headers it reads (see REQUEST_HEADERS)."""
    unknown = set(names) - REQUEST_HEADERS.keys()
    if unknown:
        raise ValueError(f"no description for the request headers {sorted(unknown)}: add them to REQUEST_HEADERS")
    return {REQUEST_HEADERS_EXTENSION: list(names)}


def _request_header(name: str) -> dict:
    description, schema = REQUEST_HEADERS[name]
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}


def _header(name: str, required: bool = True) -> dict:
    description, schema = HEADERS[name]
    return {"description": description, "required": required, "schema": schema}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


class DMarketOpenAPI(OpenAPI):
    def generate_spec_json(self):
        """flask-openapi3's document, made true to our API and readable by client generators."""
        super().generate_spec_json()
        self.spec_json["servers"] = SERVERS
        self.spec_json["info"]["license"] = LICENSE
        endpoints = self._endpoints()
        for path, item in self.spec_json["paths"].items():
            for method, operation in item.items():
                _name_operation(operation, endpoints[path, method])
                _list_errors(path, operation)
                _document_headers(operation)
        _check_unique_operation_ids(self.spec_json["paths"])
        _name_one_of_variants(self.spec_json["components"]["schemas"])
        self._offer_sign_in()

    @property
    def api_doc(self) -> dict:
        """Built once; again while Swagger UI's sign-in waits for the issuer's discovery to answer."""
        if self.spec_json and self._sign_in_pending:
            self.generate_spec_json()
        return super().api_doc

    _sign_in_pending = False

    def _offer_sign_in(self) -> None:
        """With SWAGGER_UI_CLIENT_ID, Authorize also signs in at the issuer: every protected operation takes it."""
        wanted = bool(self.config.get("SWAGGER_UI_CLIENT_ID"))
        endpoints = oauth_endpoints(self) if wanted else None
        self._sign_in_pending = wanted and endpoints is None
        if endpoints is None:
            return
        self.spec_json["components"]["securitySchemes"][OAUTH_SCHEME] = oauth_scheme(endpoints)
        for item in self.spec_json["paths"].values():
            for operation in item.values():
                if {"bearerAuth": []} in operation["security"]:
                    operation["security"].append({OAUTH_SCHEME: ["openid"]})

    def _endpoints(self) -> dict[tuple[str, str], str]:
        """Each documented (path, method)'s Flask endpoint name, without its blueprint."""
        endpoints = {}
        for rule in self.url_map.iter_rules():
            path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
            for method in rule.methods:
                endpoints[path, method.lower()] = rule.endpoint.rpartition(".")[2]
        return endpoints


def _name_operation(operation: dict, endpoint: str) -> None:
    """A readable operation id (the endpoint's name: `createProduct`, `createProductRest`); public ones say so."""
    if "_" in operation["operationId"]:  # the framework's: products_get_product_products__int_product_id__get
        operation["operationId"] = _camel_case(endpoint)
    operation.setdefault("security", [])
    for parameter in operation.get("parameters", []):
        _name_descending_keys(parameter["schema"])


def _list_errors(path: str, operation: dict) -> None:
    """flask-openapi3 adds a 422 (as an array) to every operation; list the errors each one can answer."""
    responses = operation["responses"]
    if operation.get("parameters") or operation.get("requestBody"):
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


def _camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _name_descending_keys(schema: dict) -> None:
    """Enum names for sort keys (`-name` is descending): generators make `NAME_DESC`, not `VALUE_3`."""
    values = schema.get("enum", [])
    if any(str(value).startswith("-") for value in values):
        schema["x-enum-varnames"] = [f"{v[1:].upper()}_DESC" if v[0] == "-" else v.upper() for v in values]


def _check_unique_operation_ids(paths: dict) -> None:
    counts = Counter(operation["operationId"] for item in paths.values() for operation in item.values())
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"operation ids used twice: {duplicates} (name the endpoints apart)")


def _name_one_of_variants(schemas: dict) -> None:
    """A body that takes exactly one of several fields, as named object schemas generators make types of.

    pydantic states "exactly one of" as `oneOf: [{required: [a]}, {required: [b]}]` beside the
    properties, which generators turn into an untyped body. Each variant becomes a schema of its
    own (`AdminTargetByEmail`) that requires its field and gives the others no possible value
    (NEVER), and the original name the `oneOf` of them: the same rule, with types that refuse
    `{}` and, in TypeScript, both fields at once.
    """
    for name, schema in list(schemas.items()):
        variants = schema.get("oneOf", [])
        if not variants or not all(set(v) == {"required"} and len(v["required"]) == 1 for v in variants):
            continue
        properties, refs = schema["properties"], []
        for (field,) in (variant["required"] for variant in variants):
            variant_name = name + "By" + "".join(part.capitalize() for part in field.split("_"))
            others = {other: copy.deepcopy(NEVER) for other in properties if other != field}
            schemas[variant_name] = {
                "type": "object",
                "title": variant_name,
                "properties": {field: properties[field], **others},
                "required": [field],
            }
            if "example" in properties[field]:  # Swagger UI's "Try it out" body: this field alone
                schemas[variant_name]["example"] = {field: properties[field]["example"]}
            refs.append({"$ref": f"#/components/schemas/{variant_name}"})
        schemas[name] = {"title": schema.get("title", name), "description": schema["description"], "oneOf": refs}


def _document_headers(operation: dict) -> None:
    """Every answer carries X-Request-ID; some statuses carry their own; routes declare the rest."""
    declared = operation.pop(HEADERS_EXTENSION, {})
    reads = ["X-Request-ID", *operation.pop(REQUEST_HEADERS_EXTENSION, [])]
    parameters = operation.setdefault("parameters", [])
    parameters.extend(_request_header(name) for name in reads)
    if NOT_MODIFIED in declared:
        operation["responses"][NOT_MODIFIED] = {"description": "Not modified: the client's ETag still matches"}
        parameters.append(IF_NONE_MATCH)
    for status, response in operation["responses"].items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = _header("X-Request-ID")
        for name in STATUS_HEADERS.get(status, ()):
            headers[name] = _header(name)
        if status.startswith(("2", "3")):
            for name in (name for tag in operation.get("tags", []) for name in TAG_HEADERS.get(tag, ())):
                headers[name] = _header(name, required=False)
        for name, required in declared.get(status, {}).items():
            headers[name] = _header(name, required)
