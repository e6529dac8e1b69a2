"""The audit trail as admins read it (`GET /admin/audit`) and as users read what concerns them (`GET /me/audit`)."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from app.schemas.common import PageQuery, SafeQueryText, drop_default
from app.schemas.users import UserId
from app.services.audit import ACTIONS, MAX_PAGE
from app.services.paging import CURSOR_MAX_LENGTH, CURSOR_PATTERN

AuditAction = Literal[ACTIONS]
# RFC 3339 (JSON Schema's date-time): pydantic alone would also take a number of seconds, or a bare date.
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})$")


def _date_time_text(value):
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("must be a date-time with an offset, e.g. 2026-12-01T00:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 lies before the calendar's first day in UTC
        raise ValueError("must fall within years 1 to 9999 in UTC") from None


Moment = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_in_utc)]


class MyAuditQuery(PageQuery):
    page: int = Field(
        default=1, ge=1, le=MAX_PAGE, description=f"Page number, from 1 to {MAX_PAGE}; deeper, walk by `cursor`"
    )
    action: AuditAction = Field(default=None, description="Only this action", json_schema_extra=drop_default)
    since: Moment = Field(
        default=None,
        description="Only records at or after this time (RFC 3339 with an offset, e.g. 2026-12-01T00:00:00Z)",
        json_schema_extra=drop_default,
    )
    until: Moment = Field(
        default=None,
        description="Only records before this time (RFC 3339 with an offset); at or before `since`, nothing",
        json_schema_extra=drop_default,
    )
    cursor: str = Field(
        default=None,
        max_length=CURSOR_MAX_LENGTH,
        pattern=CURSOR_PATTERN,
        description="Walk by cursor instead of page number: the X-Next-Cursor of the previous response (same "
        "filters). X-Total-Count is not sent then. Cursors are signed by the API; any other value is a 422.",
        json_schema_extra=drop_default,
    )


class AuditQuery(MyAuditQuery):
    actor: UserId = Field(
        default=None,
        description="Only actions by this user_id (`cli`: the command line)",
        json_schema_extra=drop_default,
    )
    target: SafeQueryText = Field(
        default=None, description="Only records about this user_id or product id", json_schema_extra=drop_default
    )


class MyAuditRecordOut(BaseModel):
    """A privileged action on the caller's account or products (who did it is named by account only)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="When, by the database's clock (UTC)")
    actor_id: str = Field(description="The user_id of the admin who acted, or `cli` (an operator's command)")
    action: str = Field(description=f"One of {', '.join(ACTIONS)}")
    outcome: Literal["done", "refused"] = Field(description="`refused`: stopped by the last-admin rule")
    target_type: Literal["user", "product", "audit"]
    target_id: str = Field(description="The user_id or product id acted on")
    subject_user_id: str | None = Field(description="The account concerned: the target user or the product's owner")
    request_id: str | None = Field(description="The request's X-Request-ID (to find its log lines)")
    changes: dict[str, Any] = Field(
        description="What changed: `[before, after]` pairs per field; a deleted product's last content under "
        "`product`, a disabled account's deleted products under `products_deleted`; for a refusal, its `reason`"
    )


class AuditRecordOut(MyAuditRecordOut):
    """One privileged action (or a refusal), as written in the action's own transaction."""

    actor_email: str | None = Field(description="The actor's email at the time (null for `cli`)")
    client_address: str | None = Field(description="The client address the API trusted (after TRUSTED_PROXIES)")


class AuditList(BaseModel):
    records: list[AuditRecordOut]


class MyAuditList(BaseModel):
    records: list[MyAuditRecordOut]
