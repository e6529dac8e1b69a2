"""Schemas shared by every resource: the error shape and small reusable field types."""

import itertools
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from flask import has_request_context, request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import core_schema

# C0 control characters other than tab, newline and carriage return (and DEL):
# PostgreSQL refuses NUL in text, and none of them belong in a product listing.
_ALLOWED = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TEXT_PATTERN = rf"^{_ALLOWED}*$"
# JSON can spell a lone surrogate (\ud800); it is not Unicode text and no database can store it.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def unicode_text(value: str) -> str:
    if LONE_SURROGATE.search(value):
        raise ValueError("must be valid Unicode text")
    return value


def _blank_ranges() -> list[tuple[int, int]]:
    """The ranges of every character that shows nothing: spaces, format characters, fillers.

    Unicode's separators (Zs, Zl, Zp) and format characters (Cf: U+200B zero-width space,
    U+2060 word joiner, U+FEFF, bidi controls...), plus the few letters and marks that render
    as nothing (Hangul fillers, the blank Braille pattern, variation selectors).
    """
    fillers = {0x034F, 0x115F, 0x1160, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0}
    fillers |= set(range(0xFE00, 0xFE10)) | set(range(0xE0100, 0xE01F0))
    points = sorted(
        cp
        for cp in itertools.chain(range(0x20000), range(0xE0000, 0xE1000))  # the planes that hold any
        if cp in fillers or chr(cp).isspace() or unicodedata.category(chr(cp)) in ("Cf", "Zs", "Zl", "Zp")
    )
    ranges: list[list[int]] = []
    for cp in points:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return [(a, b) for a, b in ranges]


def _class_body(ranges: list[tuple[int, int]]) -> str:
    """A regex class body with \\uXXXX escapes, read alike by Python, ECMA-262 and JSON Schema.

    A character beyond U+FFFF stays itself: only Python's regex (the validator's) reads it so.
    """

    def char(cp: int) -> str:
        return chr(cp) if cp > 0xFFFF else f"\\u{cp:04x}"

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


_BLANK_RANGES = _blank_ranges()
_ONLY_BLANK = re.compile(f"[{_class_body(_BLANK_RANGES)}]*")
# The published pattern names the blank characters up to U+FFFF only: \\uXXXX cannot spell one
# beyond, and a literal one inside a class compiles only with JavaScript's `u` flag. The few beyond
# (musical format marks, tags, variation selectors) are refused all the same, and named in words.
_BMP_BLANK = _class_body([(a, b) for a, b in _BLANK_RANGES if b <= 0xFFFF])
BLANK_BEYOND_BMP = ", ".join(f"U+{a:04X}" if a == b else f"U+{a:04X}-U+{b:04X}" for a, b in _BLANK_RANGES if a > 0xFFFF)
# ... and at least one character that is neither blank, invisible nor a control character.
NON_BLANK_PATTERN = rf"^{_ALLOWED}*[^{_BMP_BLANK}\x00-\x1f\x7f]{_ALLOWED}*$"
NON_BLANK_WORDS = (
    "Not blank: at least one character that is neither a control character nor blank (the pattern's class, "
    f"and beyond U+FFFF: {BLANK_BEYOND_BMP})"
)


@dataclass(frozen=True)
class CleanTextRule:
    """Refuses control characters (and, with `non_blank`, blank text); the spec states the same pattern.

    The validator gives a readable reason; the published pattern lets clients and contract
    fuzzers know exactly what is accepted.
    """

    non_blank: bool = False

    def _check(self, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        if self.non_blank and _ONLY_BLANK.fullmatch(value):
            raise ValueError("must not be blank")
        return value

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema, handler):
        json_schema = handler(schema)
        json_schema["pattern"] = NON_BLANK_PATTERN if self.non_blank else TEXT_PATTERN
        if self.non_blank:
            json_schema["description"] = NON_BLANK_WORDS
        return json_schema


CleanText = CleanTextRule()
NonBlankText = CleanTextRule(non_blank=True)


def drop_default(schema: dict[str, Any]) -> None:
    """Optional-but-not-nullable fields: hide the Python `None` default from the spec."""
    schema.pop("default", None)


class RequestModel(BaseModel):
    """Query and form models: flask-openapi3 asks for their JSON schema on every request; build it once."""

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict[str, Any]:
        if args or kwargs:  # the spec generator's calls, with their own options
            return super().model_json_schema(*args, **kwargs)
        cached = cls.__dict__.get("_request_schema")
        if cached is None:
            cached = super().model_json_schema()
            cls._request_schema = cached
        return cached


class FormModel(RequestModel):
    """A form body: its fields as the client sent them, strings (pydantic turns `true` or `on` into a bool).

    flask-openapi3 reads each form value as JSON first, so a name of `0` arrived as the number 0
    (422 "Input should be a valid string") and `1.10` as 1.1: the form's own values are taken instead.
    """

    @model_validator(mode="before")
    @classmethod
    def _as_sent(cls, data: Any) -> Any:
        if has_request_context() and isinstance(data, dict) and request.form:
            return {**data, **request.form.to_dict()}
        return data


class PageQuery(RequestModel):
    """Page-number paging shared by every listing; unknown query parameters are refused."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000, description="Page number, from 1")
    per_page: int = Field(default=50, ge=1, le=100, description="Items per page")


class FieldError(BaseModel):
    """One problem with the request: where, and why (the value sent is never echoed)."""

    field: str = Field(description="Where: a body key, query parameter or header, dotted for nested ones")
    reason: str = Field(description="Why it was refused")


class ErrorOut(BaseModel):
    """Every error the API returns, from every layer."""

    code: str = Field(description="Stable snake_case error code", examples=["not_found"])
    message: str = Field(description="Human-readable explanation", examples=["The product was not found."])
    details: list[FieldError] | dict[str, Any] = Field(
        default=None,
        description="Only on some errors: the problems for each field of a 422 `validation_error` (a list), "
        "or what the error concerns (an object, e.g. `skipped_unverified` of a 404 `email_not_verified`)",
        json_schema_extra=drop_default,
    )


class MessageOut(BaseModel):
    message: str


SafeQueryText = Annotated[str, Field(max_length=200), CleanText]

# A search term needs three letters or digits in a row (any character beyond ASCII counts as
# one): what both databases' trigram indexes need to seek instead of reading every row.
_SEARCHABLE = r"[0-9A-Za-z\u00c0-\uffff]{3}"
SEARCH_PATTERN = rf"^(?:{_ALLOWED}*{_SEARCHABLE}{_ALLOWED}*)?$"
_SEARCH = re.compile(SEARCH_PATTERN)


@dataclass(frozen=True)
class SearchTermRule:
    """Empty (no search), or a term with three letters or digits in a row; the spec states the pattern."""

    def _check(self, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        if not _SEARCH.fullmatch(value):
            raise ValueError("must contain at least 3 letters or digits in a row")
        return value

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema, handler):
        json_schema = handler(schema)
        json_schema["pattern"] = SEARCH_PATTERN
        return json_schema


SearchText = Annotated[str, Field(max_length=200), SearchTermRule()]
