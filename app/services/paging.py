"""One page of any listing, and the signed cursors that let clients walk deep lists at constant cost."""

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, Signer

from app.errors import ValidationFailed

# A cursor is `payload.signature`: base64url JSON, then an HMAC-SHA256 of it (43 base64url characters).
SIGNATURE_LENGTH = 43
CURSOR_MAX_LENGTH = 512
_PAYLOAD_MAX = CURSOR_MAX_LENGTH - SIGNATURE_LENGTH - 1
CURSOR_PATTERN = rf"^[A-Za-z0-9_-]{{1,{_PAYLOAD_MAX}}}\.[A-Za-z0-9_-]{{{SIGNATURE_LENGTH}}}$"
_SALT = "dmarket.cursor"
_MAX_ID = 2_147_483_647
_MAX_PRICE = Decimal(1_000_000_000)
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int | None  # None when walking by cursor: counting would cost what cursors save
    page: int
    per_page: int
    next_cursor: str | None = None
    truncated: bool = False  # a search that lists only its newest matches, more products matching
    etag: str | None = None  # a strong validator of the page (see products.list_products)
    max_page: int | None = None  # the deepest page a number reaches (deeper: by cursor)

    @property
    def last_page(self) -> int:
        last = max(1, -(-(self.total or 0) // self.per_page))
        return min(last, self.max_page) if self.max_page else last


def _signer(salt: str = _SALT) -> Signer:
    return Signer(current_app.config["SECRET_KEY"], salt=salt, digest_method=hashlib.sha256)


def encode_cursor(sort: str, value: Any, row_id: int, *, salt: str = _SALT) -> str:
    """`salt` keeps one listing's cursors from being accepted by another."""
    raw = json.dumps(
        {"s": sort, "v": value.isoformat() if isinstance(value, datetime) else str(value), "id": row_id},
        separators=(",", ":"),
        ensure_ascii=False,  # UTF-8, not \uXXXX escapes: a name of 64 emoji stays under CURSOR_MAX_LENGTH
    )
    payload = base64.urlsafe_b64encode(raw.encode()).rstrip(b"=")
    return _signer(salt).sign(payload).decode()


def _id(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_ID:
        raise ValueError("bad id")
    return value


def _text(value: str) -> str:
    # What a product name can be: PostgreSQL refuses NUL, and no driver binds a lone surrogate.
    if len(value) > 1000 or _UNSAFE_TEXT.search(value):
        raise ValueError("bad text")
    return value


def _price(value: str) -> Decimal:
    if len(value) > 40:
        raise ValueError("bad price")
    price = Decimal(value)  # InvalidOperation for anything that is not a number
    if not price.is_finite() or not 0 <= price <= _MAX_PRICE:
        raise ValueError("bad price")
    return price


def _time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:  # naive or a bare date: not what we give out
        raise ValueError("naive time")
    return moment.astimezone(UTC)  # OverflowError past the calendar's ends (0001-01-01T00:00+14:00)


# How a sort key's value travels inside a cursor (always a string), and back.
_DECODERS = {"id": lambda value: _id(int(value)), "name": _text, "price": _price, "created_at": _time}


def decode_cursor(token: str, sort: str, *, salt: str = _SALT) -> tuple[Any, int]:
    """The (sort value, id) a cursor points after; 422 unless this API signed it, for this sort.

    The signature keeps out forged and edited cursors; the checks behind it are a second
    line (a leaked SECRET_KEY, an older format) so that no cursor can ever reach the database
    with a value it would choke on.
    """
    try:
        payload = _signer(salt).unsign(token.encode("ascii"))
        data = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        if not isinstance(data, dict) or data.get("s") != sort or not isinstance(data.get("v"), str):
            raise ValueError("not for this sort")
        if len(data["v"]) > 1000 or (sort.lstrip("-") == "id" and len(data["v"]) > 10):
            raise ValueError("too long")
        value = _DECODERS[sort.lstrip("-")](data["v"])
        return value, _id(data["id"])
    except (
        BadSignature,
        ValueError,
        TypeError,
        KeyError,
        OverflowError,
        InvalidOperation,
        binascii.Error,
        UnicodeError,
        RecursionError,
    ):
        raise ValidationFailed(
            details=[{"field": "cursor", "reason": "is not a cursor this API gave out for this sort order"}]
        ) from None
