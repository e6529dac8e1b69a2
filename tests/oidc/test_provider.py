"""The API against a real, certified OpenID provider (oidc-provider), as an Auth0 tenant and as a standards-only one."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jws

from app.extensions import db
from app.models import BrowserSession, User
from tests.factories import bearer, make_user
from tests.issuer import AUDIENCE, new_key
from tests.oidc.harness import one_pass_only, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.oidc_provider, one_pass_only]


def header(token: str) -> dict:
    return jws.extract_compact(token.encode()).headers()


@pytest.mark.parametrize("trailing_slash", [False, True], ids=["issuer-without-slash", "issuer-with-slash"])
def test_browser_sign_in_at_an_auth0_like_tenant(start_provider, app_for, trailing_slash):
    provider = start_provider(profile="auth0", trailing_slash=trailing_slash)
    client = app_for(provider).test_client()

    response = sign_in(client, provider, "carol@example.com", query="?next=/openapi")
    assert response.status_code == 303
    assert response.headers["Location"] == "/openapi"
    me = client.get("/me")
    assert me.status_code == 200
    assert me.json["user_id"] == "carol@example.com"
    assert me.json["email"] == "carol@example.com" and me.json["is_admin"] is False
    created = client.post(
        "/products", json={"name": "Kettle", "price": "30.00", "quantity": 1}, headers={"Origin": "http://localhost"}
    )
    assert created.status_code == 201
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "signing_keys": "ok", "identity_provider": "ok"}


def test_login_names_the_api_both_ways(start_provider, app_for):
    provider = start_provider(profile="standard")
    client = app_for(provider).test_client()
    location = client.get("/login").headers["Location"]
    assert location.startswith(f"{provider.base}/auth?")
    query = parse_qs(urlsplit(location).query)
    assert query["audience"] == [AUDIENCE] and query["resource"] == [AUDIENCE]


def test_a_standards_only_provider_signs_in_with_resource(start_provider, app_for, make_app):
    provider = start_provider(profile="standard", trailing_slash=True)
    app = app_for(provider, AUTH_AUDIENCE_PARAMS="resource")
    client = app.test_client()

    response = sign_in(client, provider, "dave")
    assert response.status_code == 303
    assert client.get("/me").json["email"] == "dave@example.com"
    with app.app_context():
        (row,) = db.session.query(BrowserSession).all()
        assert header(row.access_token)["typ"] == "at+jwt"  # RFC 9068


def test_audience_alone_gets_a_standards_only_provider_nothing_the_api_accepts(start_provider, app_for):
    provider = start_provider(profile="standard")
    client = app_for(provider, AUTH_AUDIENCE_PARAMS="audience").test_client()

    response = sign_in(client, provider, "erin")
    assert response.status_code == 400
    assert response.json["code"] == "sign_in_failed"
    assert response.json["message"] == (
        "The provider issued an access token this API does not accept (the token is malformed); "
        "check API_AUDIENCE and AUTH_AUDIENCE_PARAMS."
    )
    assert client.get("/me").status_code == 401


def test_an_auth0_tenant_needs_only_audience(start_provider, app_for):
    provider = start_provider(profile="auth0")
    client = app_for(provider, AUTH_AUDIENCE_PARAMS="audience").test_client()
    assert sign_in(client, provider, "frank").status_code == 303
    assert client.get("/me").json["user_id"] == "frank"


def test_the_admin_claim_of_an_action_makes_an_admin(start_provider, app_for):
    provider = start_provider(profile="auth0")
    client = app_for(provider).test_client()
    assert sign_in(client, provider, "admin@example.com").status_code == 303
    assert client.get("/admin/check").json == {"is_admin": True}


def test_an_unverified_email_is_never_made_admin(start_provider, app_for):
    provider = start_provider(profile="auth0")
    client = app_for(provider, ADMIN_EMAILS="unverified@example.com").test_client()
    assert sign_in(client, provider, "unverified@example.com").status_code == 303
    assert client.get("/admin/check").json == {"is_admin": False}


@pytest.mark.parametrize("profile", ["auth0", "standard"])
def test_bearer_calls_with_the_providers_access_tokens(start_provider, app_for, profile):
    provider = start_provider(profile=profile)
    app = app_for(provider)
    client = app.test_client()
    token = provider.machine_token()
    expected_typ = "JWT" if profile == "auth0" else "at+jwt"
    assert header(token)["typ"] == expected_typ

    response = client.post("/products", json={"name": "Lamp", "price": "12.50", "quantity": 1}, headers=bearer(token))
    assert response.status_code == 201
    assert response.json["user_id"] == "dmarket-machine"
    with app.app_context():
        assert db.session.get(User, "dmarket-machine") is not None


def test_an_issuer_written_differently_from_discovery_is_named_never_a_500(start_provider, app_for):
    provider = start_provider(profile="standard")  # publishes "http://127.0.0.1:PORT", no slash
    client = app_for(provider, AUTH0_ISSUER=f"{provider.issuer}/").test_client()

    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["checks"]["signing_keys"] == "unavailable"
    assert ready.json["detail"] == (
        f"the discovery document names issuer {provider.issuer!r}, AUTH0_ISSUER is {provider.issuer + '/'!r}: "
        "they must match exactly (trailing slash included)"
    )
    bearer_call = client.get("/me", headers=bearer(provider.machine_token()))
    assert bearer_call.status_code == 503 and bearer_call.json["code"] == "issuer_unavailable"
    login = client.get("/login")
    assert login.status_code == 503 and login.json["code"] == "issuer_unavailable"


def test_provider_down_a_warm_worker_keeps_bearer_calls_and_says_sign_in_is_unavailable(start_provider, app_for):
    provider = start_provider(profile="auth0")
    app = app_for(provider, JWKS_MIN_REFRESH_SECONDS="0")
    client = app.test_client()
    assert sign_in(client, provider, "gina").status_code == 303  # discovery, keys, Authlib's metadata: all warm
    token = provider.machine_token()
    assert client.get("/me", headers=bearer(token)).status_code == 200
    provider.stop()

    assert client.get("/me", headers=bearer(token)).status_code == 200
    for path in ("/login", "/logout"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.json["code"] == "issuer_unavailable"
        assert response.headers["Retry-After"] == "5"
    page = client.get("/login?next=/openapi", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert page.mimetype == "text/html"
    assert "<h1>Sign-in is unavailable</h1>" in page.get_data(as_text=True)
    assert 'href="/login?next=/openapi"' in page.get_data(as_text=True)
    ready = client.get("/health/ready")
    app.extensions["dmarket.auth"]["verifier"].keys.background.join(10)
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "signing_keys": "ok", "identity_provider": "unreachable"}
    assert ready.json["detail"] == "ConnectionError fetching keys"
    assert client.get("/me", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("leeway, accepted", [(30, False), (60, True)])
def test_a_provider_45_seconds_ahead(start_provider, app_for, leeway, accepted):
    provider = start_provider(profile="auth0", skew=45)
    client = app_for(provider, JWT_LEEWAY=str(leeway)).test_client()

    call = client.get("/me", headers=bearer(provider.machine_token()))
    signed_in = sign_in(client, provider, "hank")
    if accepted:
        assert call.status_code == 200 and signed_in.status_code == 303
        return
    reason = "the token is not valid yet: its iat is ahead of this server's clock beyond JWT_LEEWAY"
    assert call.status_code == 401
    assert call.json["message"].startswith(f"The access token was rejected: {reason}. To get a valid one, sign in at ")
    assert signed_in.status_code == 400
    assert signed_in.json["message"] == (
        f"The provider issued an access token this API does not accept ({reason}); "
        "check the clocks of this server and the provider, or JWT_LEEWAY."
    )


def test_two_step_rotation_revokes_the_old_key(start_provider, app_for):
    old, new = new_key(), new_key()
    provider = start_provider(profile="standard", keys=[old])
    app = app_for(provider, JWKS_MAX_AGE_SECONDS="1", JWKS_MIN_REFRESH_SECONDS="0")
    keys = app.extensions["dmarket.auth"]["verifier"].keys
    client = app.test_client()
    before = provider.machine_token()
    assert client.get("/me", headers=bearer(before)).status_code == 200

    provider.restart([new, old])  # step 1: publish the new key beside the old one
    after = provider.machine_token()
    assert header(after)["kid"] == new.kid
    assert client.get("/me", headers=bearer(after)).status_code == 200  # unknown kid: fetched at once
    assert client.get("/me", headers=bearer(before)).status_code == 200

    provider.restart([new])  # step 2: revoke the old key
    revoked_at = time.monotonic()
    leaked = provider.mint(old, sub="dmarket-machine")
    while client.get("/me", headers=bearer(before)).status_code == 200:
        # The bound: JWKS_MAX_AGE_SECONDS (1), counted from before the revocation, + this loop's step.
        assert time.monotonic() - revoked_at < 1 + 0.5, "the revoked key is still trusted"
        time.sleep(0.05)
        if keys.background is not None:
            keys.background.join(5)
    for token in (before, leaked):
        response = client.get("/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json["message"].startswith(
            "The access token was rejected: the token is signed with an unknown key. To get a valid one, "
        )
    assert client.get("/me", headers=bearer(after)).status_code == 200


def test_disabling_an_account_ends_its_browser_sessions(start_provider, app_for):
    provider = start_provider(profile="auth0")
    app = app_for(provider)
    client = app.test_client()
    with app.app_context():
        make_user("dmarket-machine", is_admin=True)
    admin_headers = bearer(provider.machine_token())
    assert sign_in(client, provider, "ivy").status_code == 303
    assert client.get("/me").status_code == 200

    assert client.delete("/users/ivy", headers=admin_headers).status_code == 200
    with app.app_context():
        assert db.session.query(BrowserSession).filter_by(user_id="ivy").count() == 0
    assert client.post("/users/ivy/restore", headers=admin_headers).status_code == 200

    response = client.get("/me")  # the cookie from before the disable
    assert response.status_code == 401
    assert sign_in(client, provider, "ivy").status_code == 303  # signing in again works
    assert client.get("/me").json["user_id"] == "ivy"
