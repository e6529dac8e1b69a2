"""Probe answers for load balancers and orchestrators."""

from typing import Literal

from pydantic import BaseModel, Field


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
    detail: str | None = Field(default=None, description="Why the issuer's keys could not be fetched, if so")
