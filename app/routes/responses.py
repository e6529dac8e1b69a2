"""Small helpers the route modules share for building responses."""

from urllib.parse import quote

from flask import Flask, json, request

from app.schemas.common import ErrorOut

# Statuses every authenticated write can answer besides its own (403: a cross-site cookie write).
PROTECTED = {401: ErrorOut, 403: ErrorOut, 413: ErrorOut, 415: ErrorOut}
# A bearer token, or the session cookie set by /login (described in bearerAuth: not a scheme of its own,
# since Swagger UI cannot send a cookie it was given; writes by cookie need a trusted Origin).
SIGNED_IN = [{"bearerAuth": []}]


def json_response(body, status: int = 200, headers: dict | None = None):
    """`body` is serialised here, unless it already is JSON text (pydantic's fast path)."""
    text = body if isinstance(body, str) else json.dumps(body)
    response = Flask.response_class(text, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def pagination_links(page) -> str:
    """RFC 8288 Link header: first, prev, next and last pages (or first and next cursor), keeping other args."""

    def link(number: int | None, rel: str, cursor: str | None = None) -> str:
        args = request.args.copy()
        args.pop("cursor", None)
        args["per_page"] = str(page.per_page)
        if cursor:
            args.pop("page", None)
            args["cursor"] = cursor
        else:
            args["page"] = str(number)
        query = "&".join(f"{k}={v}" for k, v in _encoded(args))
        # A relative reference (RFC 8288 allows it): the client's own Host header never comes back.
        return f'<{request.script_root}{request.path}?{query}>; rel="{rel}"'

    if page.total is None:
        return ", ".join([link(1, "first")] + ([link(None, "next", page.next_cursor)] if page.next_cursor else []))
    links = [link(1, "first")]
    if page.page > 1:
        links.append(link(min(page.page - 1, page.last_page), "prev"))
    if page.page < page.last_page:
        links.append(link(page.page + 1, "next"))
    links.append(link(page.last_page, "last"))
    return ", ".join(links)


def _encoded(args):
    for key, values in args.lists():
        for value in values:
            yield quote(key, safe=""), quote(value, safe="")
