"""Schemas shared by every resource: the error shape and small reusable field types."""

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

# C0 control characters other than tab, newline and carriage return (and DEL):
# PostgreSQL refuses NUL in text, and none of them belong in a product listing.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


CleanText = AfterValidator(_no_control_chars)


def drop_default(schema: dict[str, Any]) -> None:
    """Optional-but-not-nullable fields: hide the Python `None` default from the spec."""
    schema.pop("default", None)


class ErrorOut(BaseModel):
    """Every error the API returns, from every layer."""

    code: str = Field(description="Stable snake_case error code", examples=["not_found"])
    message: str = Field(description="Human-readable explanation", examples=["Product 42 was not found."])
    details: list[dict[str, Any]] | dict[str, Any] | None = Field(
        default=None, description="Per-field problems for validation errors ({field, reason})"
    )


class MessageOut(BaseModel):
    message: str


SafeQueryText = Annotated[str, Field(max_length=200), CleanText]
