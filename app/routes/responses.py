"""Small helpers the route modules share for building responses."""

import sys
import threading
from collections import OrderedDict
from urllib.parse import quote

from flask import Flask, json, request
from pydantic import BaseModel

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


def as_dicts(rows) -> list[dict]:
    """Plain result rows as dicts: pydantic validates a dict in half the time it reads a row's attributes."""
    if not rows:
        return []
    keys = rows[0]._fields
    return [dict(zip(keys, row, strict=True)) for row in rows]


# Reads answered with a validator: a browser (the SPA's plain fetch) stores them and revalidates
# each time with If-None-Match; shared caches never serve them unchecked either.
REVALIDATE = "no-cache"


def not_modified(etag: str):
    """304 for a client that already holds this representation (If-None-Match, weak comparison, or *).

    None when it does not: the caller answers in full.
    """
    if "If-None-Match" not in request.headers or not request.if_none_match.contains_weak(etag):
        return None
    # The representation's type, though no body goes out (the Content-Type is dropped on the wire):
    # the security headers follow it, and a browser's cache merges them into the answer it stored.
    response = Flask.response_class(status=304, mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = REVALIDATE
    return response


def with_validator(response, etag: str | None):
    """The ETag, if the answer has one (a search that straddled a commit has none), and Cache-Control."""
    if etag is not None:
        response.set_etag(etag)
    response.headers["Cache-Control"] = REVALIDATE
    return response


# The most a Link header may take: with the other headers an answer stays far inside the proxies'
# header buffers (nginx/client-limits.conf's proxy_buffer_size; HAProxy's default is 16 KB).
LINK_MAX_BYTES = 8192
_LINK_PRIORITY = ("next", "prev", "first", "last")


def pagination_links(page, query: BaseModel) -> str:
    """RFC 8288 Link header: first, prev, next and last pages (or first and next cursor), keeping the filters.

    Built from the validated query, never from the query string: each parameter the client set
    appears once, with the value the API used, in the order it was sent; `per_page` and `page`
    take their place (or come last), and a cursor link drops `page` and ends with the cursor. A
    value percent-encodes to at most 12 bytes a character, so with the longest filters the
    header keeps the relations that fit LINK_MAX_BYTES, `next` first.
    """
    values = query.model_dump(mode="json", include=query.model_fields_set)
    parts, page_at = [], None
    for key in dict.fromkeys(request.args):
        if key not in values or key == "cursor":
            continue
        if key == "page":
            page_at = len(parts)
            parts.append("")
        else:
            parts.append(f"{key}={quote(str(values[key]), safe='')}")
    if "per_page" not in values:
        parts.append(f"per_page={page.per_page}")
    if page_at is None:
        page_at = len(parts)
        parts.append("")
    # A relative reference (RFC 8288 allows it): the client's own Host header never comes back.
    base = request.script_root + request.path

    def link(number: int, rel: str) -> str:
        parts[page_at] = f"page={number}"
        return f'<{base}?{"&".join(parts)}>; rel="{rel}"'

    links = {"first": link(1, "first")}
    if page.total is None:
        if page.next_cursor:
            query_parts = parts[:page_at] + parts[page_at + 1 :] + [f"cursor={quote(page.next_cursor, safe='')}"]
            links["next"] = f'<{base}?{"&".join(query_parts)}>; rel="next"'
    else:
        if page.page > 1:
            links["prev"] = link(min(page.page - 1, page.last_page), "prev")
        if page.page < page.last_page:
            links["next"] = link(page.page + 1, "next")
        links["last"] = link(page.last_page, "last")
    kept, size = set(), 0
    for rel in _LINK_PRIORITY:
        if rel in links and size + len(links[rel]) + 2 <= LINK_MAX_BYTES:
            kept.add(rel)
            size += len(links[rel]) + 2
    return ", ".join(text for rel, text in links.items() if rel in kept)


class Representations:
    """Serialised answers by their strong ETag, per process: an LRU bounded in entries and in bytes,
    safe across threads.

    A strong tag names exactly one body (for a listing: the query, the serialisation's version
    and the products table's change counter), so a hit is the answer the database would give
    now, without reading or serialising its rows again. Bodies are counted by the memory their
    text takes; one larger than an eighth of the budget is not kept, so a few long answers
    cannot push out every short one.
    """

    ENTRY_OVERHEAD = 600  # roughly the tag, the page's other fields and the entry's slot

    def __init__(self, size: int, max_bytes: int = 8 * 1024 * 1024):
        self.size = size if max_bytes > 0 else 0
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, etag: str):
        with self._lock:
            entry = self._entries.get(etag)
            if entry is not None:
                self._entries.move_to_end(etag)
                return entry[0]
            return None

    def put(self, etag: str, entry, body: str) -> None:
        cost = sys.getsizeof(body) + self.ENTRY_OVERHEAD
        if self.size <= 0 or cost * 8 > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(etag, None)
            if previous is not None:
                self.bytes -= previous[1]
            self._entries[etag] = (entry, cost)
            self.bytes += cost
            while len(self._entries) > self.size or self.bytes > self.max_bytes:
                self.bytes -= self._entries.popitem(last=False)[1][1]
