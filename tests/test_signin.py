"""Browser sign-in against a real OpenID provider on 127.0.0.1: login, callback, session, logout."""

import base64
import hashlib
import json
import stat
import time
import zlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask

from app import ConfigError, create_app
from app.auth.verifier import IssuerUnavailable
from app.config import INSECURE_SECRET
from app.extensions import db
from app.models import BrowserSession, Product, User
from app.models.types import utcnow
from tests.factories import make_user
from tests.issuer import AUDIENCE, CLIENT_ID, CLIENT_SECRET
from tests.signin import provider_answer, sign_in, start

PRODUCT = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 1}
SPA = "http://localhost:3000"


def users_in(app) -> list[User]:
    with app.app_context():
        return db.session.query(User).all()


def sessions_in(app) -> list[BrowserSession]:
    with app.app_context():
        return db.session.query(BrowserSession).all()


def cookie_payload(value: str) -> dict:
    """What anyone holding the cookie can read: Flask signs its session cookie, it does not encrypt it."""
    data, compressed = value.lstrip("."), value.startswith(".")
    raw = base64.urlsafe_b64decode(data.split(".")[0] + "==")
    return json.loads(zlib.decompress(raw) if compressed else raw)


class TestLogin:
    def test_redirects_to_the_provider_with_pkce_state_nonce_and_audience(self, client, issuer):
        location, params = start(client)
        assert location.startswith(f"{issuer.url}authorize?")
        assert params["response_type"] == "code"
        assert params["client_id"] == CLIENT_ID
        assert params["redirect_uri"] == "http://localhost:5000/callback"  # PUBLIC_URL's development default
        assert set(params["scope"].split()) == {"openid", "profile", "email"}
        assert params["audience"] == AUDIENCE and params["resource"] == AUDIENCE  # Auth0's and RFC 8707's
        assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) >= 43
        assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20

    def test_the_host_header_does_not_choose_the_callback(self, make_app):
        client = make_app(PUBLIC_URL="https://api.shop.example").test_client()
        response = client.get("/login", headers={"Host": "evil.example"})
        assert response.status_code == 302
        params = parse_qs(urlsplit(response.headers["Location"]).query)
        assert params["redirect_uri"] == ["https://api.shop.example/callback"]
        assert "evil.example" not in response.headers["Location"]

    def test_configured_callback_url(self, make_app):
        client = make_app(AUTH0_CALLBACK_URL="https://api.shop.example/callback").test_client()
        assert start(client)[1]["redirect_uri"] == "https://api.shop.example/callback"

    def test_sign_in_needs_a_client_id(self, make_app):
        response = make_app(CLIENT_ID="").test_client().get("/login")
        assert response.status_code == 501
        assert response.json["code"] == "sign_in_not_configured"

    def test_opening_login_again_and_again_keeps_the_cookie_small_and_the_newest_attempt_works(self, app, client):
        """Each attempt's state stayed in the cookie: past a dozen the browser would drop it, and sign-in with it."""
        for _ in range(19):  # RATELIMIT_LOGIN: 20 a minute, the callback included
            authorize_url, _ = start(client, next_path="/products?q=" + "\U0001f4a1" * 60)
        cookie = client.get_cookie("dmarket_session").value
        assert len(cookie) < 2048
        assert [key for key in cookie_payload(cookie) if key.startswith("_state_")] != []
        response = client.get(provider_answer(authorize_url))
        assert response.status_code == 303 and response.headers["Location"].startswith("/products?q=")
        assert [user.user_id for user in users_in(app)] == ["auth0|alice"]

    def test_a_next_too_long_for_the_cookie_returns_home(self, client):
        assert sign_in(client, next_path="/products?q=" + "\U0001f4a1" * 100).headers["Location"] == "/"

    def test_provider_down_is_503(self, client, issuer):
        issuer.mode = "error"
        response = client.get("/login")
        assert response.status_code == 503
        assert response.json["code"] == "issuer_unavailable"


class TestCallback:
    def test_signs_in_creates_the_user_and_returns_to_next(self, app, client, issuer):
        response = sign_in(client, next_path="/products?page=2")
        assert response.status_code == 303  # See Other: reloading next never repeats the exchange
        assert response.headers["Location"] == "/products?page=2"
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("dmarket_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        [user] = users_in(app)
        assert (user.user_id, user.email, user.name) == ("auth0|alice", "alice@example.com", "Alice")
        exchange = issuer.token_requests[-1]
        assert exchange["client_secret"] == CLIENT_SECRET and len(exchange["code_verifier"]) >= 43

    @pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
    def test_next_is_only_ever_a_local_path(self, client, target):
        assert sign_in(client, next_path=target).headers["Location"] == "/"

    def test_updates_a_known_user(self, app, client, issuer):
        sign_in(client)
        issuer.login_as = {**issuer.login_as, "name": "Alice Liddell"}
        sign_in(app.test_client())
        assert [u.name for u in users_in(app)] == ["Alice Liddell"]

    def test_provider_error_is_a_clear_400_and_writes_nothing(self, app, client, issuer):
        issuer.deny_sign_in = True
        authorize_url, _ = start(client)
        response = client.get(provider_answer(authorize_url))
        assert response.status_code == 400
        assert response.json == {"code": "sign_in_failed", "message": "Sign-in was not completed: access_denied."}
        assert users_in(app) == []

    def test_state_mismatch(self, app, client, issuer):
        authorize_url, _ = start(client)
        path = provider_answer(authorize_url)
        forged = path.split("state=")[0] + "state=forged-state-value"
        response = client.get(forged)
        assert response.status_code == 400
        assert response.json["code"] == "invalid_state"
        assert users_in(app) == []

    def test_callback_from_another_browser_is_refused(self, app, client, issuer):
        authorize_url, _ = start(client)
        response = app.test_client().get(provider_answer(authorize_url))  # no sign-in state in this browser
        assert response.status_code == 400
        assert response.json["code"] == "invalid_state"

    def test_missing_code(self, client):
        _, params = start(client)
        response = client.get(f"/callback?state={params['state']}")
        assert response.status_code == 400
        assert response.json["code"] == "sign_in_failed"

    def test_invalid_or_reused_code(self, app, client, issuer):
        authorize_url, params = start(client)
        provider_answer(authorize_url)
        response = client.get(f"/callback?code=not-a-code&state={params['state']}")
        assert response.status_code == 400
        assert response.json == {
            "code": "sign_in_failed",
            "message": "The provider refused the sign-in: invalid_grant.",
        }
        assert users_in(app) == []

    @pytest.mark.parametrize(
        "overrides",
        [{"nonce": "replayed-nonce"}, {"aud": "another-client"}, {"iss": "https://evil.example/"}, {"exp": 1000}],
    )
    def test_invalid_id_token(self, app, client, issuer, overrides):
        issuer.id_token_overrides = overrides
        response = sign_in(client)
        assert response.status_code == 400
        assert response.json["code"] == "invalid_id_token"
        assert users_in(app) == []

    def test_access_token_for_another_api_is_refused(self, app, client, issuer):
        issuer.access_token_overrides = {"aud": "https://another-api.example"}
        response = sign_in(client)
        assert response.status_code == 400
        assert "check API_AUDIENCE" in response.json["message"]
        assert users_in(app) == []

    def test_signing_keys_unavailable_at_the_callback_is_503_not_500(self, app, client, monkeypatch):
        authorize_url, _ = start(client)
        path = provider_answer(authorize_url)

        def unavailable(token):
            raise IssuerUnavailable("ConnectionError fetching keys")

        monkeypatch.setattr(app.extensions["dmarket.auth"]["verifier"], "verify", unavailable)
        response = client.get(path)
        assert response.status_code == 503
        assert response.json["code"] == "issuer_unavailable"
        assert users_in(app) == [] and sessions_in(app) == []

    def test_a_clock_ahead_is_named_not_the_audience(self, app, client, issuer):
        issuer.access_token_overrides = {"iat": int(time.time()) + 45}
        response = sign_in(client)
        assert response.status_code == 400
        assert response.json["message"] == (
            "The provider issued an access token this API does not accept (the token is not valid yet: its iat is "
            "ahead of this server's clock beyond JWT_LEEWAY); check the clocks of this server and the provider, "
            "or JWT_LEEWAY."
        )

    def test_provider_down_during_the_exchange_is_503(self, app, client, issuer):
        authorize_url, _ = start(client)
        path = provider_answer(authorize_url)
        issuer.mode = "error"
        response = client.get(path)
        assert response.status_code == 503
        assert users_in(app) == []


class TestEmailVerifiedAtSignIn:
    """The ID token's email_verified is recorded with its email; another token's flag never vouches for it."""

    def verified(self, app) -> tuple:
        with app.app_context():
            user = db.session.get(User, "auth0|alice")
            return user.email, user.email_verified

    @pytest.mark.parametrize("flag", [True, False])
    def test_from_the_id_token(self, app, client, issuer, flag):
        issuer.login_as = {**issuer.login_as, "email_verified": flag}
        issuer.access_token_overrides = {"email": None, "email_verified": None, "name": None}
        assert sign_in(client).status_code == 303
        assert self.verified(app) == ("alice@example.com", flag)

    def test_the_access_tokens_flag_does_not_vouch_for_the_id_tokens_email(self, app, client, issuer):
        issuer.login_as = {"sub": "auth0|alice", "email": "alice@x.example", "name": "Alice"}
        issuer.access_token_overrides = {"email": "other@example.com", "email_verified": True}
        assert sign_in(client).status_code == 303
        assert self.verified(app) == ("alice@x.example", False)

    def test_a_disabled_account_cannot_sign_in(self, app, client, issuer):
        with app.app_context():
            make_user("auth0|alice", email="alice@example.com", disabled_at=utcnow())
        response = sign_in(client)
        assert response.status_code == 403
        assert response.json["code"] == "account_disabled"
        assert client.get("/me").status_code == 401

    def test_a_session_ends_up_refused_once_its_account_is_disabled(self, app, client):
        sign_in(client)
        with app.app_context():
            db.session.get(User, "auth0|alice").disabled_at = utcnow()
            db.session.commit()
        response = client.get("/me")
        assert response.status_code == 403 and response.json["code"] == "account_disabled"


class TestSession:
    def test_me_with_the_session_cookie(self, client):
        assert client.get("/me").status_code == 401
        sign_in(client)
        me = client.get("/me")
        assert me.status_code == 200
        assert me.json["user_id"] == "auth0|alice" and me.json["email"] == "alice@example.com"
        assert set(me.json) == {"user_id", "email", "email_verified", "name", "is_admin", "created_at"}

    def test_writes_by_cookie_need_a_trusted_origin(self, app, client):
        sign_in(client)
        created = client.post("/products/create", json=PRODUCT, headers={"Origin": SPA})
        assert created.status_code == 201
        assert created.json["user_id"] == "auth0|alice"
        own = client.post("/products/create", json=PRODUCT, headers={"Origin": "http://localhost"})
        assert own.status_code == 201
        by_referer = client.post("/products/create", json=PRODUCT, headers={"Referer": f"{SPA}/products/new"})
        assert by_referer.status_code == 201
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {}):
            refused = client.post("/products/create", json=PRODUCT, headers=headers)
            assert refused.status_code == 403
            assert refused.json["code"] == "cross_site_request"
        with app.app_context():
            assert db.session.query(Product).count() == 3

    def test_a_null_origin_is_refused_even_with_a_trusted_referer(self, app, client):
        sign_in(client)
        refused = client.post("/products/create", json=PRODUCT, headers={"Origin": "null", "Referer": f"{SPA}/new"})
        assert refused.status_code == 403
        assert refused.json["code"] == "cross_site_request"
        with app.app_context():
            assert db.session.query(Product).count() == 0

    def test_reads_by_cookie_need_no_origin(self, client):
        sign_in(client)
        assert client.get("/me").status_code == 200

    def test_a_bearer_token_needs_no_origin(self, client, user_headers):
        response = client.post("/products/create", json=PRODUCT, headers={**user_headers, "Origin": "https://x.test"})
        assert response.status_code == 201

    def test_the_session_never_reaches_the_client_in_clear(self, client):
        response = sign_in(client)
        cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        assert "access_token" not in client.get("/me").get_data(as_text=True)
        assert len(cookie) < 4000  # browsers drop larger cookies

    def test_the_cookie_holds_only_a_random_id_and_the_database_only_its_hash(self, app, client):
        sign_in(client)
        payload = cookie_payload(client.get_cookie("dmarket_session").value)
        assert set(payload) == {"sid", "_permanent"}
        assert "eyJ" not in json.dumps(payload)  # no JWT (header, claims or signature) inside
        [row] = sessions_in(app)
        assert row.user_id == "auth0|alice" and row.access_token.count(".") == 2 and row.id_token.count(".") == 2
        assert row.access_token not in json.dumps(payload)
        assert row.id == hashlib.sha256(payload["sid"].encode()).hexdigest() != payload["sid"]
        assert len(base64.urlsafe_b64decode(payload["sid"] + "=")) == 32  # 256 random bits
        assert timedelta(hours=7, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=8)

    def test_an_expired_session_is_refused_and_purged_by_the_next_sign_in(self, app, client):
        sign_in(client)
        with app.app_context():
            db.session.query(BrowserSession).update({"expires_at": utcnow() - timedelta(seconds=1)})
            db.session.commit()
        assert client.get("/me").status_code == 401
        assert client.get_cookie("dmarket_session") is None or "sid" not in cookie_payload(
            client.get_cookie("dmarket_session").value
        )
        sign_in(app.test_client())
        assert len(sessions_in(app)) == 1  # the expired row went, the new one stays
        assert sessions_in(app)[0].expires_at > utcnow()

    def test_disabling_an_account_ends_its_sessions_for_good(self, app, client, admin_headers):
        """A stolen cookie must not come back to life when the account is restored."""
        sign_in(client)
        other = app.test_client()
        sign_in(other)  # a second browser of the same account
        assert client.delete("/users/auth0|alice", headers=admin_headers).status_code == 200
        assert sessions_in(app) == []
        assert client.post("/users/auth0|alice/restore", headers=admin_headers).status_code == 200

        for browser in (client, other):
            response = browser.get("/me")
            assert response.status_code == 401
        assert sign_in(client).status_code == 303
        assert client.get("/me").json["user_id"] == "auth0|alice"

    def test_deleting_a_user_deletes_their_sessions(self, app, client):
        sign_in(client)
        with app.app_context():
            db.session.delete(db.session.get(User, "auth0|alice"))
            db.session.commit()
        assert sessions_in(app) == []
        assert client.get("/me").status_code == 401

    def test_a_tampered_cookie_is_not_a_session(self, client):
        sign_in(client)
        cookie = client.get_cookie("dmarket_session")
        client.set_cookie("dmarket_session", cookie.value[:-4] + "AAAA")
        assert client.get("/me").status_code == 401

    def test_secure_and_same_site_none_over_https(self, client):
        response = client.get("/login", base_url="https://api.shop.example")
        cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "SameSite=None" in cookie and "HttpOnly" in cookie


class TestLogout:
    def test_clears_the_session_and_ends_the_provider_session(self, client, issuer):
        sign_in(client)
        response = client.get("/logout")
        assert response.status_code == 302
        target = urlsplit(response.headers["Location"])
        assert f"{target.scheme}://{target.netloc}{target.path}" == f"{issuer.url}oidc/logout"
        params = {k: v[0] for k, v in parse_qs(target.query).items()}
        assert params["post_logout_redirect_uri"] == "http://localhost:5000/signed-out"
        assert params["client_id"] == CLIENT_ID and params["id_token_hint"].count(".") == 2
        assert client.get("/me").status_code == 401

    def test_the_host_header_does_not_choose_where_logout_returns(self, make_app, issuer):
        client = make_app(PUBLIC_URL="https://api.shop.example/").test_client()
        sign_in(client)
        response = client.get("/logout", headers={"Host": "evil.example"})
        params = parse_qs(urlsplit(response.headers["Location"]).query)
        assert params["post_logout_redirect_uri"] == ["https://api.shop.example/signed-out"]
        assert "evil.example" not in response.headers["Location"]

    def test_auth0_logout_when_the_provider_has_no_end_session_endpoint(self, make_app, issuer):
        issuer.end_session = False
        client = make_app(LOGOUT_REDIRECT_URL="http://localhost:3000/").test_client()
        sign_in(client)
        target = urlsplit(client.get("/logout").headers["Location"])
        assert target.path == "/v2/logout"
        assert parse_qs(target.query) == {"client_id": [CLIENT_ID], "returnTo": ["http://localhost:3000/"]}

    def test_a_copied_cookie_is_worthless_after_logout(self, app, client):
        sign_in(client)
        copy = client.get_cookie("dmarket_session").value
        assert client.get("/logout").status_code == 302
        assert sessions_in(app) == []
        thief = app.test_client()
        thief.set_cookie("dmarket_session", copy)
        assert thief.get("/me").status_code == 401
        replayed = thief.post("/products/create", json=PRODUCT, headers={"Origin": SPA})
        assert replayed.status_code == 401
        assert replayed.json["code"] == "unauthorized"
        with app.app_context():
            assert db.session.query(Product).count() == 0

    def test_the_final_landing_page_says_signed_out(self, client):
        page = client.get("/signed-out")
        assert page.status_code == 200
        assert "<h1>Signed out</h1>" in page.get_data(as_text=True)

    def test_provider_end_session_page_answers(self, client):
        sign_in(client)
        assert requests.get(client.get("/logout").headers["Location"], timeout=5).status_code == 200


class TestSecretKey:
    """Without SECRET_KEY, cookies are never signed with a key published in the source."""

    def test_a_random_key_is_made_once_kept_private_and_shared(self, make_app, settings, capsys):
        first = make_app(APP_ENV="", SECRET_KEY="")
        path = Path(settings["INSTANCE_PATH"]) / "secret_key"
        key = first.config["SECRET_KEY"]
        assert key != INSECURE_SECRET and len(key) >= 32 and key == path.read_text()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "SECRET_KEY is not set: cookies are signed with a random key kept in" in capsys.readouterr().err
        second = make_app(APP_ENV="", SECRET_KEY="")  # another worker, or a restart
        assert second.config["SECRET_KEY"] == key
        client = first.test_client()
        sign_in(client)
        other_worker = second.test_client()
        other_worker.set_cookie("dmarket_session", client.get_cookie("dmarket_session").value)
        assert other_worker.get("/me").json["user_id"] == "auth0|alice"

    def test_a_cookie_signed_with_the_published_secret_is_not_a_session(self, make_app):
        app = make_app(APP_ENV="", SECRET_KEY="")
        client = app.test_client()
        sign_in(client)
        sid = cookie_payload(client.get_cookie("dmarket_session").value)["sid"]
        published = Flask("forger")
        published.secret_key = INSECURE_SECRET
        forged = published.session_interface.get_signing_serializer(published).dumps({"sid": sid})
        forger = app.test_client()
        forger.set_cookie("dmarket_session", forged)
        assert forger.get("/me").status_code == 401

    def test_a_set_key_is_used_and_nothing_is_written(self, app, settings):
        assert app.config["SECRET_KEY"] == settings["SECRET_KEY"]
        assert not (Path(settings["INSTANCE_PATH"]) / "secret_key").exists()

    def test_an_unwritable_instance_folder_names_the_setting(self, tmp_path, issuer):
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        config = {"INSTANCE_PATH": str(blocker / "instance"), "AUTH0_ISSUER": issuer.url, "API_AUDIENCE": AUDIENCE}
        with pytest.raises(ConfigError, match="set SECRET_KEY"):
            create_app(config)

    @pytest.mark.parametrize("secret", ["", INSECURE_SECRET, "s" * 31])
    def test_production_refuses_a_missing_or_weak_key(self, tmp_path, issuer, secret):
        config = {"INSTANCE_PATH": str(tmp_path), "AUTH0_ISSUER": issuer.url, "API_AUDIENCE": AUDIENCE}
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            create_app({**config, "APP_ENV": "production", "SECRET_KEY": secret})
        assert not (tmp_path / "secret_key").exists()


def test_sign_in_is_rate_limited_per_ip(make_app):
    client = make_app(RATELIMIT_LOGIN="2 per minute").test_client()
    assert [client.get("/login").status_code for _ in range(3)] == [302, 302, 429]


def test_the_whole_browser_journey(app, client, issuer):
    """Sign in at the provider, use the API with the cookie, meet the Origin check, sign out."""
    assert sign_in(client, next_path="/me").headers["Location"] == "/me"
    assert client.get("/me").json["email"] == "alice@example.com"
    created = client.post("/products/create", json=PRODUCT, headers={"Origin": SPA})
    assert created.status_code == 201 and created.json["user_id"] == "auth0|alice"
    forged = client.post("/products/create", json=PRODUCT, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert client.get("/logout").status_code == 302
    assert client.get("/me").status_code == 401
    assert client.post("/products/create", json=PRODUCT, headers={"Origin": SPA}).status_code == 401
    with app.app_context():
        assert [p.user_id for p in db.session.query(Product).all()] == ["auth0|alice"]
