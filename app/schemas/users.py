"""Users as clients see them (never their tokens), and what admins send to change them."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import PageQuery, SafeQueryText, drop_default, unicode_text

# Something@something, without blanks or control characters (pydantic enforces the same pattern).
# C1 controls and U+FEFF are named: `\s` counts U+0085 in pydantic's (Rust) regex but not in
# JSON Schema's, and U+FEFF the other way round.
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\ufeff]+"
Email = Annotated[
    str,
    Field(min_length=3, max_length=320, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}$"),
    AfterValidator(unicode_text),
]
# The identity provider's subject, as tokens may carry it (see the verifier): no control characters.
UserId = Annotated[
    str,
    Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(unicode_text),
]
Auth0Sync = Literal["updated", "failed", "not_configured"]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: str = Field(description="The identity provider's subject, e.g. auth0|64f0...")
    email: str | None
    email_verified: bool = Field(description="Whether the identity provider verified this email")
    name: str | None
    is_admin: bool = Field(description="Admin in this API's records (the token's admin claim also grants admin)")
    created_at: datetime


class AccountOut(UserOut):
    """A user as admins see them: with the account's state."""

    disabled_at: datetime | None = Field(
        description="When an admin deleted (disabled) the account; null while it is active"
    )


class AdminUserOut(AccountOut):
    product_count: int


class UserList(BaseModel):
    users: list[AdminUserOut]


class UserQuery(PageQuery):
    q: SafeQueryText = Field(
        default=None, description="Case-insensitive search in email and name", json_schema_extra=drop_default
    )


def optional_with_example(value: str):
    """No `None` default in the spec, and an example (each variant of the admin target shows its own)."""

    def extra(schema: dict) -> None:
        drop_default(schema)
        schema["example"] = value

    return extra


class AdminTarget(BaseModel):
    """Exactly one of `email` (every account whose email the identity provider verified) or `user_id` (that account)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["email"]}, {"required": ["user_id"]}]})

    email: Email = Field(
        default=None,
        description="Every account whose email this is AND the identity provider verified (case-insensitive)",
        json_schema_extra=optional_with_example("someone@example.com"),
    )
    user_id: UserId = Field(
        default=None, description="Exactly this account", json_schema_extra=optional_with_example("auth0|64f0c1a2b3")
    )

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.email is None) == (self.user_id is None):
            raise ValueError("send exactly one of email or user_id")
        return self


class AdminChangeOut(BaseModel):
    user: AccountOut = Field(description="The account changed (the oldest, when several share the email)")
    updated: list[str] = Field(description="Every account changed: the one user_id, or every verified account")
    skipped_unverified: list[str] = Field(
        description="Accounts with this email that were NOT changed: the provider has not verified their email"
    )
    message: str
    auth0_sync: Auth0Sync = Field(
        description="Whether app_metadata.is_admin was also written to Auth0 (Management API); "
        "the change here stands either way"
    )


class AdminCheckOut(BaseModel):
    is_admin: bool


class MeOut(UserOut):
    is_admin: bool = Field(description="Effective admin rights: this API's records or the token's admin claim")


class SessionTokenOut(BaseModel):
    """A short-lived bearer token for the browser's signed-in user (development sign-in)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(ge=1, description="Seconds until it expires (15 minutes at most, never past the session)")
    user: MeOut


class UserPath(BaseModel):
    user_id: UserId


class UserDeletedOut(BaseModel):
    message: str
    products_deleted: int
    disabled_at: datetime = Field(description="When the account was disabled (kept from the first deletion)")
    auth0_sync: Auth0Sync = Field(description="Whether the account was also blocked at Auth0 (Management API)")


class UserRestoredOut(BaseModel):
    user: AccountOut
    auth0_sync: Auth0Sync = Field(description="Whether the account was also unblocked at Auth0 (Management API)")
