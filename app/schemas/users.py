"""Users as clients see them (never their tokens), and what admins send to change them."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import PageQuery, SafeQueryText, drop_default

# Something@something, without blanks or control characters (pydantic enforces the same pattern).
# C1 controls and U+FEFF are named: `\s` counts U+0085 in pydantic's (Rust) regex but not in
# JSON Schema's, and U+FEFF the other way round.
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\ufeff]+"
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}$")]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: str = Field(description="The identity provider's subject, e.g. auth0|64f0...")
    email: str | None
    name: str | None
    is_admin: bool = Field(description="Admin in this API's records (the token's admin claim also grants admin)")
    created_at: datetime


class AdminUserOut(UserOut):
    product_count: int


class UserList(BaseModel):
    users: list[AdminUserOut]


class UserQuery(PageQuery):
    q: SafeQueryText = Field(
        default=None, description="Case-insensitive search in email and name", json_schema_extra=drop_default
    )


class EmailIn(BaseModel):
    email: Email


class AdminChangeOut(BaseModel):
    user: UserOut = Field(description="The account with this email (the oldest, when several share it)")
    updated: list[str] = Field(description="Every account changed: all accounts sharing the email")
    auth0_sync: Literal["updated", "failed", "not_configured"] = Field(
        description="Whether app_metadata.is_admin was also written to Auth0 (Management API); "
        "the change here stands either way"
    )


class AdminCheckOut(BaseModel):
    is_admin: bool


class MeOut(UserOut):
    is_admin: bool = Field(description="Effective admin rights: this API's records or the token's admin claim")


class UserPath(BaseModel):
    user_id: str = Field(min_length=1, max_length=255)


class UserDeletedOut(BaseModel):
    message: str
    products_deleted: int
