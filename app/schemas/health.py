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


class ReadinessOut(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: ReadinessChecks
