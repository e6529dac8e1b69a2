"""Request and response bodies of the products resource; the product rules live here."""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from app.schemas.common import CleanText, NonBlankText, PageQuery, RequestModel, SafeQueryText, SearchText, drop_default
from app.services.paging import CURSOR_MAX_LENGTH, CURSOR_PATTERN
from app.services.products import MAX_PAGE

# Lengths are checked as sent (as the spec states them), then surrounding blanks are trimmed.
Name = Annotated[str, Field(min_length=1, max_length=64), NonBlankText, AfterValidator(str.strip)]
Description = Annotated[str, Field(max_length=1000), CleanText]
# Clients (the reference SPA among them) may send numbers as strings; the spec documents
# exactly which strings are accepted and the validator enforces the same patterns.
PRICE_PATTERN = r"^(?:[1-9][0-9]{0,8}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9])|1000000000(?:\.00?)?)$"
QUANTITY_PATTERN = r"^(?:0|[1-9][0-9]{0,8})$"


def _numeric_string(pattern: str, what: str):
    compiled = re.compile(pattern)

    def check(value):
        if isinstance(value, bool):  # JSON true/false: a number in Python's eyes, not in the spec's
            raise ValueError(f"must be {what}")
        if isinstance(value, str) and not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return BeforeValidator(check)


Price = Annotated[
    Decimal,
    Field(gt=0, le=1_000_000_000, decimal_places=2, allow_inf_nan=False),
    _numeric_string(PRICE_PATTERN, "a number greater than 0 and at most 1e9, with at most 2 decimal places"),
    WithJsonSchema(
        {
            "anyOf": [
                # No `multipleOf: 0.01`: binary floats make validators refuse cents such as 0.07 or 19.99.
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000},
                {"type": "string", "pattern": PRICE_PATTERN},
            ],
            "description": "Price, exact to the cent: > 0, <= 1e9, at most 2 decimal places (a number with more "
            "is refused with 422; as a string, the pattern says the same)",
            "examples": [19.99],
        }
    ),
]
Quantity = Annotated[
    int,
    Field(ge=0, le=2_147_483_647),
    _numeric_string(QUANTITY_PATTERN, "a whole number of at most 9 digits"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 2_147_483_647},
                {"type": "string", "pattern": QUANTITY_PATTERN},
            ],
            "description": "Units in stock (>= 0)",
            "examples": [3],
        }
    ),
]
# Visible ASCII, inner spaces allowed: opaque to the API, compared exactly as sent.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
MAX_PRODUCT_ID = 2_147_483_647
PRODUCT_ID_RULE = f"Product ids are whole numbers from 1 to {MAX_PRODUCT_ID}."


def _product_id_rule(value, handler):
    """Whatever is wrong with an id (letters, a sign, a fraction, the range), the reason is the one rule."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("product_id", PRODUCT_ID_RULE) from None


ProductId = Annotated[
    int,
    Field(ge=1, le=MAX_PRODUCT_ID, description=f"The product's id: a whole number from 1 to {MAX_PRODUCT_ID}"),
    WrapValidator(_product_id_rule),
]
SortKey = Literal["id", "-id", "name", "-name", "price", "-price", "created_at", "-created_at"]


class ProductIn(BaseModel):
    """A new product; the owner is always the caller, never the body."""

    # Swagger UI's "Try it out" starts from this example, not from strings generated to fit the rules.
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "example": {"name": "Desk lamp", "description": "Warm light, adjustable arm", "price": 19.99, "quantity": 3}
        },
    )

    name: Name
    description: Description | None = Field(default=None, json_schema_extra=drop_default)
    price: Price
    quantity: Quantity


class ProductUpdate(BaseModel):
    """Any subset of the editable fields. Read-only and unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    name: Name = Field(default=None, json_schema_extra=drop_default)
    description: Description | None = Field(default=None, json_schema_extra=drop_default)
    price: Price = Field(default=None, json_schema_extra=drop_default)
    quantity: Quantity = Field(default=None, json_schema_extra=drop_default)


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    price: float = Field(description="Exact to the cent: at most 2 decimal places")
    quantity: int
    user_id: str = Field(description="The owner's user id (identity provider subject)")
    created_at: datetime
    updated_at: datetime


class ProductList(RootModel[list[ProductOut]]):
    """A page of products, as a bare array (the reference SPA needs an array)."""


class ProductPath(BaseModel):
    product_id: ProductId


class ProductQuery(PageQuery):
    page: int = Field(
        default=1,
        ge=1,
        le=MAX_PAGE,
        description=f"Page number, from 1 to {MAX_PAGE}: an offset costs what it skips, so deeper lists are "
        "walked by `cursor` (X-Next-Cursor), at the same cost at any depth",
    )
    q: SearchText = Field(
        default=None,
        description="Case-insensitive search in name and description: at least 3 letters or digits in a row. "
        "Lists the 1,000 newest matches at most (X-Search-Truncated says when more products match).",
        json_schema_extra=drop_default,
    )
    user_id: SafeQueryText = Field(
        default=None, description="Only products of this owner", json_schema_extra=drop_default
    )
    sort: SortKey = Field(
        default="-id",
        description="Sort key; prefix with - for descending. The default, newest first, puts what was just "
        "created on the first page (clients that list without parameters, like the SPA, show it).",
    )
    cursor: str = Field(
        default=None,
        max_length=CURSOR_MAX_LENGTH,
        pattern=CURSOR_PATTERN,
        description="Walk by cursor instead of page number: pass the X-Next-Cursor of the previous response "
        "(same sort and filters). Constant cost at any depth; `page` is ignored and X-Total-Count is not sent. "
        "Cursors are signed by the API (`payload.signature`); any other value is refused with 422.",
        json_schema_extra=drop_default,
    )


class IdempotencyHeader(RequestModel):
    """Optional request headers of a create."""

    idempotency_key: str = Field(
        default=None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="A unique value per intended create (a UUID, say), 1-255 printable ASCII characters. "
        "Retrying with the same key and body replays the first 201 (same product, Location and ETag, with "
        "`Idempotent-Replayed: true`) instead of creating again; the same key with another body is a 422 "
        "`idempotency_key_reused`, and while the first request with it is still running a 409 "
        "`idempotency_key_in_use`. Keys belong to the caller and are kept for 24 hours.",
        json_schema_extra=drop_default,
    )
