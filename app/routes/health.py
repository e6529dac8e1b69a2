"""Probes: liveness says the process answers; readiness says it can do real work."""

from flask_openapi3 import APIBlueprint, Tag

from app.routes.responses import json_response
from app.schemas.health import HealthOut, ReadinessOut
from app.services.health import INFORMATIONAL, readiness

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health", description="Probes for load balancers")])


@bp.get("/health", responses={200: HealthOut})
def health():
    """Liveness: the process is up (touches nothing else)."""
    return json_response({"status": "ok"})


@bp.get("/health/ready", responses={200: ReadinessOut, 503: ReadinessOut})
def ready():
    """Readiness: the database answers and the issuer's signing keys are at hand (the provider's state is reported)."""
    checks, detail = readiness()
    ok = all(value in ("ok", "local") for name, value in checks.items() if name not in INFORMATIONAL)
    headers = None if ok else {"Retry-After": "5"}
    body = {"status": "ready" if ok else "unavailable", "checks": checks}
    if detail:
        body["detail"] = detail
    return json_response(body, 200 if ok else 503, headers)
