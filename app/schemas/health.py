"""Probe answers for load balancers and orchestrators."""

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import drop_default


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadinessChecks(BaseModel):
    database: Literal["ok", "unavailable"]
    signing_keys: Literal["ok", "unavailable", "local"] = Field(
        description="The issuer's JWKS is cached or fetchable (auth0 mode); `local` in local mode"
    )
    identity_provider: Literal["ok", "unreachable", "local"] = Field(
        description="Whether the issuer answered its last key fetch; `unreachable` alone does not make the API unready"
    )


class ReadinessOut(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: ReadinessChecks
    detail: str = Field(
        default=None,
        description="Only when the issuer failed: why its keys could not be fetched (e.g. an issuer mismatch)",
        json_schema_extra=drop_default,
    )
