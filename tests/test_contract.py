"""Contract fuzzing: schemathesis generates requests from our own OpenAPI document and checks the answers.

No input may make the API answer 500, contradict its document (status codes, content
types, headers, response schemas) or accept data the document says is invalid. Runs
in-process with a fixed seed; `make fuzz` runs many more examples.
"""

import os
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from werkzeug.serving import make_server

from tests.documents import DOCUMENTS, LOCAL
from tests.factories import bearer, make_product, make_user
from tests.issuer import ADMIN_CLAIM

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
ALL_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.ignored_auth,
    checks.use_after_free,
    checks.ensure_resource_availability,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run: CI is reproducible
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# Loaded at import: schemathesis' lazy (fixture) loader does not run under pytest 9.
SPEC, LOCAL_SPEC = DOCUMENTS["auth0"], DOCUMENTS["local"]
schema = schemathesis.openapi.from_dict(SPEC)
sign_in_form = schemathesis.openapi.from_dict(LOCAL_SPEC).include(path="/login", method="POST")


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def api(make_app):
    """The API, in this process over real HTTP, with limits off (fuzzing is a flood by design) and rows to hit."""
    app = make_app(RATELIMIT_ENABLED="false")
    assert app.test_client().get("/openapi/openapi.json").json == SPEC
    with app.app_context():
        make_user("auth0|root", email="root@example.com", is_admin=True)
        for owner in ("auth0|alice", "auth0|bob"):
            for n in range(5):
                make_product(owner, name=f"Item {n}")
    yield from _serve(app)


@pytest.fixture
def local_api(make_app):
    app = make_app(RATELIMIT_ENABLED="false", **LOCAL)
    assert app.test_client().get("/openapi/openapi.json").json == LOCAL_SPEC
    yield from _serve(app)


def checks_for(case) -> list:
    without_acceptance = [check for check in ALL_CHECKS if check is not checks.positive_data_acceptance]
    if case.operation.path == "/callback":
        # A code and state are only valid when the provider issued them to this browser's own
        # sign-in; any other well-formed pair is rightly a 400 (documented), never a 2xx.
        return without_acceptance
    if "cursor" in (case.query or {}):
        # Likewise a cursor is valid only if the API gave it out: a random well-formed token is a 422.
        return without_acceptance
    if "Idempotency-Key" in (case.headers or {}):
        # A well-formed key already used with another body is rightly a 422 (idempotency_key_reused).
        return without_acceptance
    if "If-Match" in (case.headers or {}):
        # A well-formed ETag that is not the product's current one is rightly a 412.
        return without_acceptance
    price = case.body.get("price") if isinstance(case.body, dict) else None
    if isinstance(price, float) and round(price, 2) != price:
        # "At most 2 decimal places" is said in words, not as `multipleOf: 0.01` (binary floats make
        # validators refuse 19.99): a number with more is schema-valid, and rightly a 422.
        return without_acceptance
    if any(value == [] for value in (case.query or {}).values()):
        # An extra query parameter whose value is an empty list is sent as nothing (requests drops
        # it): that "negative" request reaches the API as a valid one, rightly answered 200.
        return [check for check in ALL_CHECKS if check is not checks.negative_data_rejection]
    return ALL_CHECKS


@schema.parametrize()
@FUZZ_SETTINGS
def test_as_a_signed_in_user(case, api, issuer):
    token = issuer.token("auth0|alice", email="alice@example.com")
    case.call_and_validate(base_url=api, headers=bearer(token), checks=checks_for(case))


@schema.parametrize()
@FUZZ_SETTINGS
def test_as_an_admin(case, api, issuer):
    token = issuer.token("auth0|root", email="root@example.com", **{ADMIN_CLAIM: {"is_admin": True}})
    case.call_and_validate(base_url=api, headers=bearer(token), checks=checks_for(case))


@sign_in_form.parametrize()
@FUZZ_SETTINGS
def test_the_local_sign_in_form(case, local_api):
    """Its fields are strings as sent: a name of `0` was read as JSON, a number, and refused with 422."""
    case.call_and_validate(base_url=local_api, headers={"Origin": local_api}, checks=checks_for(case))
