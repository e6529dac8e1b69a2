"""One page of any listing, and the opaque cursors that let clients walk deep lists at constant cost."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from app.errors import ValidationFailed

# How a sort key's value travels inside a cursor, and back.
_DECODERS = {"id": int, "name": str, "price": Decimal, "created_at": datetime.fromisoformat}


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int | None  # None when walking by cursor: counting would cost what cursors save
    page: int
    per_page: int
    next_cursor: str | None = None
    etag: str | None = None  # a strong validator of the page (see products.list_products)

    @property
    def last_page(self) -> int:
        return max(1, -(-(self.total or 0) // self.per_page))


def encode_cursor(sort: str, value: Any, row_id: int) -> str:
    raw = json.dumps({"s": sort, "v": value.isoformat() if isinstance(value, datetime) else str(value), "id": row_id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, sort: str) -> tuple[Any, int]:
    """The (sort value, id) a cursor points after; 422 when it is not one of ours or not for this sort."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["s"] != sort:
            raise ValueError("sort changed")
        row_id = data["id"]
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError("bad id")
        return _DECODERS[sort.lstrip("-")](data["v"]), row_id
    except (ValueError, TypeError, KeyError, InvalidOperation, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            details=[{"field": "cursor", "reason": "is not a cursor this API gave out for this sort order"}]
        ) from None
